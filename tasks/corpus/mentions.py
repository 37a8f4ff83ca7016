"""A graph for corpora that have none: an edge wherever a document mentions another's title.

Titles are matched as whole word sequences (case-sensitive, since titles are mostly proper names)
with a dictionary of title n-grams, so the cost grows with the corpus's words, not with words times
titles. Each edge keeps the sentence that mentions the title: the evidence a hop over it cites.
"""

from __future__ import annotations

import re
from collections import defaultdict

from storage.schemas import Triple

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"\w+(?:['-]\w+)*")
MIN_TITLE_CHARS = 4
MAX_TITLE_WORDS = 8


def mention_triples(ids: list[str], titles: list[str], texts: list[str]) -> list[Triple]:
    by_title: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for doc_id, title in zip(ids, titles, strict=True):
        words = tuple(_TOKEN.findall(title))
        if len(title.strip()) >= MIN_TITLE_CHARS and 0 < len(words) <= MAX_TITLE_WORDS:
            by_title[words].append(doc_id)
    # A title shared by several documents is ambiguous: a mention of it names no single page.
    targets = {words: docs[0] for words, docs in by_title.items() if len(docs) == 1}
    longest = max((len(w) for w in targets), default=0)

    triples: list[Triple] = []
    for doc_id, text in zip(ids, texts, strict=True):
        linked: set[str] = set()
        for sentence in _SENTENCE.split(text):
            words = _TOKEN.findall(sentence)
            i = 0
            while i < len(words):
                # Longest match first, so "Port Avel Museum" wins over "Port Avel".
                for n in range(min(longest, len(words) - i), 0, -1):
                    target = targets.get(tuple(words[i : i + n]))
                    if target is not None and target != doc_id and target not in linked:
                        linked.add(target)
                        triples.append(
                            Triple(
                                subject=doc_id,
                                relation="mentions",
                                object=target,
                                doc_ids=[doc_id],
                                evidence=sentence.strip(),
                            )
                        )
                        i += n - 1
                        break
                i += 1
    return triples
