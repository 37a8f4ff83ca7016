"""Outcome rewards: normalised exact match and token F1 against the answer and its aliases.

Normalisation follows SQuAD and Search-R1: lower case, no punctuation, no articles, single spaces.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str | None, answers: list[str]) -> float:
    if prediction is None:
        return 0.0
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(a) for a in answers))


def token_f1(prediction: str | None, answers: list[str]) -> float:
    if prediction is None:
        return 0.0
    guess = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(guess) & Counter(gold)).values())
        if common:
            precision, recall = common / len(guess), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
