"""Invented names: syllable combinations no language model has seen as entities."""

from __future__ import annotations

import random

_ONSETS = [
    "b",
    "br",
    "c",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "r",
    "s",
    "st",
    "t",
    "tr",
    "v",
    "vr",
    "z",
    "th",
    "sh",
    "qu",
    "y",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ia", "y"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk", "sk"]


class NameGenerator:
    """Deterministic, collision-free invented names for one world."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        while True:
            parts = [
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(self.rng.randint(*syllables))
            ]
            word = "".join(parts).capitalize()
            if 4 <= len(word) <= 12 and word not in self.used:
                self.used.add(word)
                return word

    def near_miss(self, name: str) -> str | None:
        """An unused name one vowel away from ``name`` (None if every such name is taken)."""
        # Only invented words change: "The ... Chronicle" keeps its common words.
        positions, start = [], 0
        for word in name.split(" "):
            if word in self.used:
                positions += [start + i for i, ch in enumerate(word) if ch in "aeiou"]
            start += len(word) + 1
        self.rng.shuffle(positions)
        for i in positions:
            for vowel in self.rng.sample("aeiou", 5):
                candidate = name[:i] + vowel + name[i + 1 :]
                if candidate != name and candidate not in self.used:
                    self.used.add(candidate)
                    return candidate
        return None

    def unique(self, make) -> str:
        while True:
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name
