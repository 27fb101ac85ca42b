"""What a continual run (and the RL outer loop) reads: its base model and the stream of sessions with the
questions that score them.

Two kinds of base:
- a pretraining run (`model/` and `world/`, as `retain pretrain` writes it): the world's sessions in order;
  base knowledge is closed-book recall on the world's known people; the held-out skill is reading a fresh
  person's biography; answers are graded by the world's exact match;
- any local causal LM folder (config.json, weights, tokenizer; `retain model get` writes one): sessions come
  from a file (`data`); base knowledge is the general questions of `base_probe` that the model answers right
  before any write, and perplexity drift on held-out text; answers are graded as free text (SQuAD's
  normalised exact match and token F1).

Either base reads a session file (`data`); a world base keeps its own base-knowledge questions and skill.
What needs the world (oracle notes, bits per parameter, questions about the world's people) is left out on a
plain base, and `Stream.notes` says what was left out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from retain.errors import RetainError
from retain.runs.seed import derive_seed
from retain.world import examples as X
from retain.world.io import load_questions, load_user_sessions, load_world, read_text
from retain.world.world import Question, Session, World

DATA = Path(__file__).resolve().parents[1] / "data"
PROBE = DATA / "probe" / "general_qa.jsonl"
"""The shipped base probe: 330 general-knowledge questions with short answers, written for the project."""
HELDOUT = DATA / "probe" / "heldout.txt"
"""The shipped held-out prose for perplexity drift, written for the project."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class Base:
    """The base model of a run: its folder, and the world it was trained on (None for a plain model)."""

    path: Path
    model_dir: Path
    world: World | None

    @property
    def style(self) -> str:
        """The text format its prompts default to: the world's, or plain text."""
        return "world" if self.world is not None else "plain"


def resolve_base(path: str | Path) -> Base:
    """A pretraining run or a model folder; one-line errors for anything else (before any work starts)."""
    from retain.models.build import check_causal_lm_dir

    p = Path(path)
    if (p / "model").is_dir() and (p / "world").is_dir():
        return Base(p, p / "model", load_world(p / "world"))
    if (p / "config.json").is_file():
        check_causal_lm_dir(p)
        if not any((p / f).is_file() for f in TOKENIZER_FILES):
            raise RetainError(f"model folder {p} has no tokenizer (no tokenizer.json or tokenizer_config.json); "
                              "save one beside the weights with tokenizer.save_pretrained(DIR)")  # fmt: skip
        return Base(p, p, None)
    raise RetainError(f"base '{path}' is neither a pretraining run (model/ and world/) nor a model folder "
                      "(config.json); pretrain one (retain pretrain --config configs/pretrain.yaml --out runs/base) "
                      "or import one (retain model get smollm2-135m --out models/smollm2-135m)")  # fmt: skip


@dataclass
class Stream:
    """The sessions of a run and the fixed questions asked after every write."""

    sessions: list[Session]
    base: list[Question]
    """Base-knowledge questions (closed-book): the world's known people, or the probe's general questions
    (of which the run keeps those the base model answers right)."""
    skills: list[tuple[str, Question]]
    """Open-book questions on fresh people (world only): the held-out reading skill."""
    shots: list[Question]
    """Questions for many-shot ICL (the context medium's `shots`), disjoint from `base`."""
    format_shots: list[Question]
    """Question-answer pairs shown before every question of every medium (the answer format), disjoint from
    `base` and `shots`."""
    session_grading: str
    """world (the world's exact match) or text (SQuAD exact match and F1)."""
    base_grading: str
    heldout: list[str] = field(default_factory=list)
    """Held-out paragraphs for perplexity drift (a plain base; a world base when `heldout_text` is given)."""
    world: World | None = None
    """The world the sessions come from (None for a session file): oracle notes, bits, rehearsal."""
    notes: list[str] = field(default_factory=list)
    """One line per thing left out, and why."""


def heldout_paragraphs(path: str | Path) -> list[str]:
    """The paragraphs (blank-line separated) of a held-out text file."""
    path = Path(path)
    if not path.is_file():
        raise RetainError(f"held-out text not found: {path}")
    paragraphs = [" ".join(p.split()) for p in read_text(path).split("\n\n") if p.strip()]
    if not paragraphs:
        raise RetainError(f"{path} holds no text")
    return paragraphs


def build_stream(base: Base, sessions: int | None, data: str | None, base_n: int, skill_n: int, shots: int,
                 seed: int, base_probe: str | None = None, heldout_text: str | None = None) -> Stream:  # fmt: skip
    """The run's sessions (the first `sessions`, all when None) and questions. Every check of the input runs
    here, before a run directory exists."""
    notes: list[str] = []
    world = base.world
    if data is None:
        if world is None:
            raise RetainError(f"base {base.path} is a model folder without a world; give the sessions: "
                              "--set data=FILE.jsonl (docs/world.md)")  # fmt: skip
        stream = world.sessions
        source = "the world"
    else:
        stream = load_user_sessions(data)
        source = str(data)
    n = len(stream) if sessions is None else sessions
    if n > len(stream):
        raise RetainError(f"sessions={n} but {source} holds {len(stream)}; lower sessions")
    chosen = stream[:n]
    if world is None:  # the world's mentors are people only its own model read about
        dropped = sum(q.kind == "two_hop" for s in chosen for q in s.questions)
        if dropped:
            chosen = [_without_two_hop(s) for s in chosen]
            notes.append(f"{dropped} two-hop questions dropped: their second hop is a fact about the world's "
                         "people, which only the world's model was trained on")  # fmt: skip
    for s in chosen:
        if not s.transcript.strip():
            raise RetainError(f"session {s.index + 1} of {source} has an empty transcript")
        if not s.questions:
            hint = "; plain-text session files carry none: write JSONL (docs/world.md)" if data else ""
            raise RetainError(f"session {s.index + 1} of {source} has no questions, so its recall is undefined{hint}")
    if world is not None:
        base_qs, skills, many = world_suites(world, base_n, skill_n, seed)
        fmt_shots, many = many[:shots], many[shots:]
        return Stream(chosen, base_qs, skills, many, fmt_shots, "world" if data is None else "text", "world",
                      heldout_paragraphs(heldout_text) if heldout_text else [], world if data is None else None,
                      notes)  # fmt: skip
    probe = load_questions(base_probe or PROBE)
    random.Random(derive_seed(seed, "probe")).shuffle(probe)
    fmt_shots, rest = probe[:shots], probe[shots:]
    k = min(base_n, max(len(rest) - len(rest) // 4, 0))  # a quarter at least stays out: the many-shot pool
    if k < 1:
        raise RetainError(f"base_probe {base_probe or PROBE} holds {len(probe)} questions: too few for {shots} "
                          "shots and an evaluated set; add questions or lower eval.shots")  # fmt: skip
    notes.append("no skill: the held-out reading skill is about the world's people (plain base)")
    notes.append("no bits per parameter: the sessions' facts and their choice sets are the world's")
    return Stream(chosen, rest[:k], [], rest[k:], fmt_shots, "text", "text",
                  heldout_paragraphs(heldout_text or HELDOUT), None, notes)  # fmt: skip


def _without_two_hop(s: Session) -> Session:
    from dataclasses import replace

    return replace(s, questions=[q for q in s.questions if q.kind != "two_hop"])


def world_suites(world: World, base_n: int, skill_n: int,
                 seed: int) -> tuple[list[Question], list[tuple[str, Question]], list[Question]]:  # fmt: skip
    """The world's fixed questions: base knowledge (closed-book recall on known people, facts no session of
    the world updates), the reading skill, and the many-shot pool (QA split, disjoint from base)."""
    updated = world.updated_facts()
    rng = random.Random(derive_seed(seed, "continual", "base"))
    base = [q for _, q in X.closed_book_items(world.known, world, rng, two_hop=False)
            if q.kind == "recall" and (q.entity, q.attribute) not in updated]  # fmt: skip
    base = random.Random(derive_seed(seed, "continual", "base_subset")).sample(base, min(base_n, len(base)))
    skills = X.open_book_items(world.split("eval"), world, random.Random(derive_seed(seed, "continual", "skill")))
    skills = [it for it in skills if it[1].kind == "recall"]
    skills = random.Random(derive_seed(seed, "continual", "skill_subset")).sample(skills, min(skill_n, len(skills)))
    taken = {q.text for q in base}
    shot_rng = random.Random(derive_seed(seed, "shots"))
    shots = [q for _, q in X.closed_book_items(world.split("known_qa"), world, shot_rng, two_hop=False)
             if q.kind == "recall" and (q.entity, q.attribute) not in updated and q.text not in taken]  # fmt: skip
    return base, skills, shots


def unknown_note(stream: Stream, tokenizer, ids: list[list[int]]) -> None:
    """A note when the tokenizer reads much of the sessions (`ids`: each transcript's tokens) as its unknown
    token (the world's word-level vocabulary reading a user's file): the model then sees few of their words."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return
    share = sum(i == unk for t in ids for i in t) / max(sum(map(len, ids)), 1)
    if share > 0.05:
        stream.notes.append(f"{share:.0%} of the sessions' tokens are unknown to the base's tokenizer: the model "
                            "reads little of them (a world base knows only the world's words)")  # fmt: skip


def check_lengths(stream: Stream, ids: list[list[int]], limit: int | None, source: str) -> None:
    """A one-line error for a session (`ids`: each transcript's tokens) longer than the model's context (it
    could not be read in context)."""
    if limit is None:
        return
    for s, t in zip(stream.sessions, ids):
        n = len(t) + 1
        if n >= limit:
            raise RetainError(f"session {s.index + 1} of {source} is {n} tokens, longer than the model's context of "
                              f"{limit}; split it into shorter sessions")  # fmt: skip
