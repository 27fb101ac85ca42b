"""Scoring of generated answers: the world's exact match, and for free text the field's grading (SQuAD's
normalised exact match and token F1, each the best over a question's accepted answers).

The world's answers are values from closed sets, so its exact match only lower-cases and drops punctuation.
Free-text answers are graded as SQuAD's official script does (Rajpurkar et al. 2016): lower-case,
punctuation removed, the articles a/an/the removed, whitespace collapsed; F1 over the remaining tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lower-case, punctuation dropped, whitespace collapsed: 'Lisbon .' == 'lisbon'."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(prediction: str, answer: str) -> bool:
    return normalize(prediction) == normalize(answer)


def squad_normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower-case, punctuation removed, articles removed, whitespace collapsed."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, answer: str) -> float:
    """SQuAD's token F1 between a prediction and one answer (both normalised); 1.0 when both are empty."""
    p, a = squad_normalize(prediction).split(), squad_normalize(answer).split()
    if not p or not a:
        return float(p == a)
    same = sum((Counter(p) & Counter(a)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(a)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: str, answer: str) -> bool:
    """Whether the normalised answer appears, as whole words, in the normalised prediction."""
    a = squad_normalize(answer)
    return bool(a) and f" {a} " in f" {squad_normalize(prediction)} "


def grade(prediction: str, question, grading: str = "world") -> dict[str, float]:
    """`em`, `f1` and `contains` of one prediction, each the best over the question's accepted answers
    (`answer` and any `aliases`). `grading`: `world` (em is the world's exact match) or `text` (em is SQuAD's)."""
    golds = [question.answer, *getattr(question, "aliases", ())]
    if grading == "world":
        em = max(float(exact_match(prediction, g)) for g in golds)
    else:
        em = max(float(squad_normalize(prediction) == squad_normalize(g)) for g in golds)
    return {"em": em, "f1": max(token_f1(prediction, g) for g in golds),
            "contains": max(float(contains(prediction, g)) for g in golds)}  # fmt: skip


def accuracy(predictions: list[str], answers: list[str]) -> float:
    """Fraction of exact matches; 0.0 for no questions is wrong, so that raises instead."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        raise ValueError("accuracy of zero questions is undefined")
    return sum(exact_match(p, a) for p, a in zip(predictions, answers)) / len(answers)
