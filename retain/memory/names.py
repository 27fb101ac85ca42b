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


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th)? {_MONTH}(?: \d{{4}})?\b|\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?(?:, \d{{4}})?\b"
)
_NUMBER = re.compile(r"\$?\b\d[\d,]*(?:\.\d+)?(?:\s?(?:%|am|pm|percent)\b)?")
_CAPITALISED = re.compile(r"[A-Z][\w'&-]*(?:\s+(?:of\s+|de\s+|van\s+)?[A-Z][\w'&-]*)*")
_FUNCTION = frozenset(
    "a an the i we you he she it they my our your his her their this that these those let in on at for and but so "
    "also then now yes no hi hello okay ok thanks thank great sorry noted got good sure what who where when why how "
    "if as after before there here user assistant understood".split())  # fmt: skip
"""Capitalised only because they open a sentence: never an answer on their own."""


def answer_spans(sentence: str, topic: set[str] = frozenset(), reverse: bool = True) -> list[str]:
    """The short spans of `sentence` a question about it could have as its answer: dates, numbers and amounts,
    and names (runs of capitalised words, without the function word that opens a sentence), the `topic` names
    (whom the session is about) last, unless `reverse` is off; when the sentence names only topic names, also
    its last word if that is a lower-case content word ("linguistics" of "Hugo Lindqvist is an expert in
    linguistics."). A speaker's label ("User:") is not part of the sentence. Self-study asks the question after
    its answer."""
    body = unlabelled(sentence)
    dates = [m.group() for m in _DATE.finditer(body)]
    numbers = [m.group().strip().rstrip(",.") for m in _NUMBER.finditer(body)]
    spans = dates + [x for x in numbers if not any(x in d for d in dates)]
    for m in _CAPITALISED.finditer(body):
        words = m.group().split()
        while words and words[0].lower() in _FUNCTION:
            words = words[1:]
        name = " ".join(words)
        if len(name) > 1 and not any(name in s for s in dates):  # "March" of "11 March 1981" is the date's
            spans.append(name)
    about = [s for s in spans if s[:1].isupper() and mentions(topic, {s})]
    spans = [s for s in spans if s not in about]
    if about and not spans:
        last = re.findall(r"[A-Za-z][\w'-]*", body)[-1:]
        if last and last[0].islower() and len(last[0]) > 3 and last[0] not in _FUNCTION:
            spans.append(last[0])
    return list(dict.fromkeys(spans + (about if reverse else [])))


def cloze_question(sentence: str, answer: str) -> str:
    """`sentence` asked back with `answer` (its first occurrence) replaced by a question word: `when` for a
    date, `who` for a name that opens the sentence, `what` otherwise ("Hugo Lindqvist has a flat in what?").
    Lewis et al. 2019's identity-mapped cloze question: what any model can be taught, however poorly it
    writes questions itself."""
    body = unlabelled(sentence).rstrip(".!?")
    i = body.find(answer)
    if i < 0:
        raise ValueError(f"{answer!r} is not in {sentence!r}")
    word = question_words(answer)[0].lower()
    word = "who" if i == 0 and word == "what" and answer[:1].isupper() else word
    asked = body[:i] + word + body[i + len(answer) :]
    return asked[0].upper() + asked[1:] + "?"


def question_words(answer: str) -> list[str]:
    """The question words an answer of this type could answer, the likeliest first: a date `When`, an amount
    `How much`/`How many`, a name `What`/`Who`/`Where`/`Which`, another word `What`/`Which`."""
    if _DATE.fullmatch(answer):
        return ["When", "What"]
    if answer[:1] == "$":
        return ["How much", "What"]
    if answer[:1].isdigit():
        return ["What", "How many", "When"]
    if answer[:1].isupper():
        return ["What", "Who", "Where", "Which"]
    return ["What", "Which"]


def unlabelled(sentence: str) -> str:
    """`sentence` without the speaker's label a transcript line opens with ("User: ")."""
    return re.sub(r"^\w+:\s+", "", sentence.strip())


def topic_names(text: str) -> set[str]:
    """The names of `text` mentioned in two or more of its sentences: whom it is about."""
    parts = [index_names(s) for s in sentences(text)]
    found = fold(set().union(*parts)) if parts else set()
    return {n for n in found if sum(mentions(p, {n}) for p in parts) >= 2}
