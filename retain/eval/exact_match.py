"""Exact-match scoring of generated answers."""

from __future__ import annotations

import re
import string

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize(text: str) -> str:
    """Lower-case, punctuation dropped, whitespace collapsed: 'Lisbon .' == 'lisbon'."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(prediction: str, answer: str) -> bool:
    return normalize(prediction) == normalize(answer)


def accuracy(predictions: list[str], answers: list[str]) -> float:
    """Fraction of exact matches; 0.0 for no questions is wrong, so that raises instead."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        raise ValueError("accuracy of zero questions is undefined")
    return sum(exact_match(p, a) for p, a in zip(predictions, answers)) / len(answers)
