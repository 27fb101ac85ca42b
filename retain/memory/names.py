"""Sentences and the names they mention: what `focus: entity` and `focus: cue` show a reader, what
`retrieve` ranks blocks by, and what a routed KV prefix block is found by. Plain text in, plain text out."""

from __future__ import annotations

import math
import re
from collections import Counter

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence's final punctuation."""
    return [s for s in _SENTENCE.split(text.strip()) if s]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def retrieve(query: str, blocks: list[str], k: int) -> list[str]:
    """The `k` blocks sharing the most rare words with `query` (each shared word weighs log(N / df), so words
    in every block count for nothing), kept in their original order; ties go to the newer block."""
    words = [_words(b) for b in blocks]
    df = Counter(w for ws in words for w in ws)
    q = _words(query)
    score = [sum(math.log(len(blocks) / df[w]) for w in q & ws) for ws in words]
    best = sorted(range(len(blocks)), key=lambda i: (score[i], i), reverse=True)[:k]
    return [blocks[i] for i in sorted(best)]


_BOUNDARY = (".", "?", "!", ":")


def names(text: str) -> set[str]:
    """The runs of capitalised words in `text` that do not start a sentence (nor follow `Q:`, `A:`, a
    speaker's colon): the names a question or a query mentions ("Hugo Lindqvist" in "Where does Hugo
    Lindqvist live?"). A name that starts a sentence loses its first word ("Lindqvist" of "Hugo Lindqvist
    works at ..."), which still finds the same person's sentences."""
    out, run, prev = set(), [], "."
    for word in re.sub(r"\s+([.,?!:;])", r"\1", text).split():  # "work ? A :" (decoded ids) as "work? A:"
        bare = word.rstrip(".,?!:;")
        if bare[:1].isupper() and not prev.endswith(_BOUNDARY) and not word.endswith(":"):  # "Q:" is a label
            run.append(bare)
        elif run:
            out.add(" ".join(run))
            run = []
        if run and bare != word:  # punctuation ends a name
            out.add(" ".join(run))
            run = []
        prev = word
    if run:
        out.add(" ".join(run))
    return out


def focus(text: str, query: str) -> str:
    """The sentences of `text` that mention a name `query` mentions, in order ("" when none does)."""
    wanted = [re.compile(rf"\b{re.escape(n)}\b") for n in names(query)]
    return " ".join(s for s in sentences(text) if any(w.search(s) for w in wanted))


_OPENING = re.compile(r"(?:^|[.?!:]\s+)([A-Z][\w-]*(?:\s+[A-Z][\w-]*)+)")
"""A run of two or more capitalised words right after a sentence boundary: a name that opens a sentence."""


def index_names(text: str) -> set[str]:
    """The names a block is found by: `names(text)` and the runs of two or more capitalised words that open a
    sentence ("Lars Navarro" of "User: Lars Navarro moved ...", of which `names` keeps "Navarro"); a name
    held whole in a longer one is dropped, so two people who share a surname do not share a block."""
    return fold(names(text) | set(_OPENING.findall(text)))


def fold(found: set[str]) -> set[str]:
    """`found` without one-letter names ("I") and without the names held whole in a longer one."""
    found = {n for n in found if len(n) > 1}
    return {n for n in found if not any(n != m and re.search(rf"\b{re.escape(n)}\b", m) for m in found)}


def mentions(keys: set[str], wanted: set[str]) -> bool:
    """Whether a name of `wanted` and a name of `keys` are the same person: one holds the other as whole words
    ("Lindqvist", what `names` keeps of a name that starts a sentence, holds for "Hugo Lindqvist")."""
    hit = lambda a, b: re.search(rf"\b{re.escape(a)}\b", b) is not None  # noqa: E731
    return any(hit(a, b) or hit(b, a) for a in wanted for b in keys)
