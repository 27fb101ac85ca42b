"""Factual accuracy and diversity of generated text, read back with the world's own templates.

Every sentence is matched against all biography and update templates (training and held-out). A match
gives (template, name, value); a sentence states a fact correctly when the name is the subject's and the
value is the subject's value of that template's attribute. A sentence no template matches counts as wrong.
Diversity: distinct-n (unique n-grams over all n-grams of the samples of one prompt, averaged over
prompts) and template entropy (entropy of the biography templates used for each attribute, divided by the
log of its number of training templates, so 1 is what pretraining showed; averaged over attributes).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from retain.world import templates as T
from retain.world.world import ATTRIBUTE_SETS

_TOKEN = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Tokens as the word-level tokenizer splits them, so decoded and rendered text compare equal."""
    return _TOKEN.findall(text)


def normalize(text: str) -> str:
    """`text` with one space between its tokens, as decoded word-level text reads."""
    return " ".join(words(text))


@dataclass(frozen=True)
class Match:
    attribute: str
    template: str
    """'bio:<i>' or 'update:<i>': which template list, which entry."""
    name: str
    value: str


def _pattern(template: str) -> re.Pattern:
    text = normalize(template.replace("{name}", " NAMESLOT ").replace("{value}", " VALUESLOT "))
    text = re.escape(text).replace("NAMESLOT", "(?P<name>.+?)", 1).replace("NAMESLOT", "(?P=name)")
    return re.compile(text.replace("VALUESLOT", "(?P<value>.+?)") + "$")


_LEGAL = {a: {normalize(v) for v in vs} for a, vs in ATTRIBUTE_SETS.items()}
"""The values each attribute can take, normalised (built once: the birth dates alone are thousands)."""

_PATTERNS = [(a, f"{kind}:{i}", _pattern(t)) for kind, table in (("bio", T.BIO), ("update", T.UPDATE))
             for a, ts in table.items() for i, t in enumerate(ts)]  # fmt: skip


def sentences(text: str) -> list[str]:
    """Sentences of `text` as space-joined tokens, each ending with its '.'."""
    out, cur = [], []
    for w in words(text):
        cur.append(w)
        if w == ".":
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))  # an unfinished last sentence (cut by max_new_tokens) is kept, and fails
    return out


def parse(sentence: str, names: set[str] | None = None) -> Match | None:
    """The template reading of one sentence whose value is a legal value of its attribute (a known name for
    `mentor` when `names` is given); the longest template wins when several read it."""
    found = []
    for attr, tid, pat in _PATTERNS:
        m = pat.match(sentence)
        if not m:
            continue
        value = m.group("value")
        legal = _LEGAL.get(attr, names)
        if legal is None or value in legal:
            found.append((len(pat.pattern), Match(attr, tid, m.group("name"), value)))
    return max(found, key=lambda x: x[0])[1] if found else None


def fact_accuracy(texts: list[str], truths: list[dict[tuple[str, str], str]], names: set[str]) -> dict[str, float]:
    """Over all sentences of `texts`: the fraction that state a true fact (`truths[i]` maps (name,
    attribute) to the value for text i), and the fraction no template reads."""
    right = total = unread = 0
    for text, truth in zip(texts, truths, strict=True):
        for s in sentences(text):
            total += 1
            m = parse(s, names)
            if m is None:
                unread += 1
            elif truth.get((m.name, m.attribute)) == m.value:
                right += 1
    return {"fact_acc": right / total if total else 0.0, "unread": unread / total if total else 0.0,
            "sentences": total}  # fmt: skip


def distinct_n(groups: list[list[str]], n: int = 2) -> float:
    """Mean over groups (the samples of one prompt) of unique n-grams / n-grams."""
    scores = []
    for texts in groups:
        grams = [tuple(w[i : i + n]) for t in texts for w in [words(t)] for i in range(len(w) - n + 1)]
        if grams:
            scores.append(len(set(grams)) / len(grams))
    return sum(scores) / len(scores) if scores else 0.0


def template_entropy(texts: list[str], names: set[str] | None = None) -> float:
    """Mean over attributes of the normalised entropy of the biography templates used to state it."""
    used: dict[str, Counter] = defaultdict(Counter)
    for t in texts:
        for s in sentences(t):
            m = parse(s, names)
            if m is not None and m.template.startswith("bio:"):
                used[m.attribute][m.template] += 1
    out = []
    for attr, c in used.items():
        n, k = sum(c.values()), len(T.split(T.BIO[attr], False))
        out.append(-sum(v / n * math.log(v / n) for v in c.values()) / math.log(k))
    return sum(out) / len(out) if out else 0.0
