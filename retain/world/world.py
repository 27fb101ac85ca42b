"""The synthetic world: entities with attributes drawn from finite sets, mentor relations, and the
session stream that introduces new entities and updates known facts.

Everything is generated from `WorldConfig.seed` with explicit `random.Random` instances, so a world is
reproducible from its config alone. Text rendering lives in `retain.world.render`.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from typing import Literal

from retain.errors import RetainError
from retain.runs.seed import derive_seed
from retain.world import vocab
from retain.world.templates import QUESTION_FORMS, UPDATABLE

# Attribute -> its finite choice set. The mentor relation's set is the known entities.
ATTRIBUTE_SETS: dict[str, list[str]] = {
    "birth_city": vocab.CITIES,
    "birth_date": [f"{d} {m} {y}" for y in vocab.YEARS for m in vocab.MONTHS for d in vocab.DAYS],
    "university": vocab.UNIVERSITIES,
    "field": vocab.FIELDS,
    "employer": vocab.EMPLOYERS,
    "home_city": vocab.CITIES,
}
ATTRIBUTES = (*ATTRIBUTE_SETS, "mentor")


@dataclass
class WorldConfig:
    """How big the world is and how its session stream looks."""

    seed: int = 0
    """Seed of everything generated: entities, facts, sessions, questions."""
    n_known: int = 200
    """Entities in pretraining (their biographies are training text): the base knowledge."""
    qa_fraction: float = 0.5
    """Fraction of known entities whose question-answer pairs are also training text; the rest are only
    described in biographies, so closed-book answers about them test knowledge extraction."""
    n_eval: int = 100
    """Entities never trained on, for open-book evaluation (biography in context)."""
    n_sessions: int = 10
    """Sessions in the continual stream."""
    new_per_session: int = 1
    """New entities each session introduces (one keeps a session near 110 tokens, so ten fit in a context
    of 1,024 and the in-context baseline can hold the whole stream)."""
    updates_per_session: int = 1
    """Known facts (employer, home city) each session updates; the newer value must win."""
    chatter_per_session: int = 1
    """Distractor turns per session."""
    tokenizer: Literal["word", "bpe"] = "word"
    """Tokenizer trained on the world's text: one id per word, or byte-level BPE."""
    bpe_vocab_size: int = 2048
    """Vocabulary size when tokenizer is bpe."""
    question_forms: int = 4
    """Question forms per attribute: 4 (3 trained, 1 held out; two-hop and comparison 2 and 1) or 10 (8 and 2;
    4 and 2). 10 trains on more phrasings and holds out twice as many; 4 is the world of every number recorded
    before 2026-12-08 (docs/world.md)."""

    def __post_init__(self) -> None:
        if self.question_forms not in QUESTION_FORMS:
            raise ValueError(f"world.question_forms must be one of {QUESTION_FORMS}, got {self.question_forms}")
        if not 0.0 <= self.qa_fraction <= 1.0:
            raise ValueError(f"world.qa_fraction must be in [0, 1], got {self.qa_fraction}")
        for key in ("n_known", "n_eval", "n_sessions", "new_per_session"):
            if getattr(self, key) < (2 if key == "n_known" else 0):
                raise ValueError(f"world.{key} is too small: {getattr(self, key)}")
        total = self.n_known + self.n_eval + self.n_sessions * self.new_per_session
        capacity = len(vocab.FIRST_NAMES) * len(vocab.LAST_NAMES) // 2  # half stay free for in-context examples
        if total > capacity:
            raise ValueError(f"world asks for {total} entities but names allow at most {capacity}; lower world.n_known")
        if self.updates_per_session * self.n_sessions > self.n_known * len(UPDATABLE):
            raise ValueError("world.updates_per_session x n_sessions exceeds the known facts that can be updated")


@dataclass
class Entity:
    """A person: full name, attribute values, mentor's name, and which split it belongs to."""

    name: str
    attrs: dict[str, str]
    split: str
    """'known_qa', 'known_bio', 'eval', or 'session' (introduced in a session)."""

    @property
    def facts(self) -> dict[str, str]:
        return self.attrs


@dataclass
class Fact:
    entity: str
    attribute: str
    value: str


@dataclass
class Question:
    """A question with a single answer. `kind` is recall, update, two_hop or compare."""

    text: str
    answer: str
    kind: str
    entity: str
    attribute: str
    heldout: bool = False
    """Phrased with a held-out template."""
    aliases: list[str] = field(default_factory=list)
    """Other accepted answers (user questions may list several; graded against the best)."""


@dataclass
class Session:
    """One session of the stream: its transcript turns, the facts it teaches, and its questions."""

    index: int
    turns: list[tuple[str, str]]
    """(role, text) pairs; role is 'User' or 'Assistant'."""
    new_entities: list[str]
    facts: list[Fact]
    """Every fact the session states, in the order it states them (updates included)."""
    updates: list[Fact]
    questions: list[Question] = field(default_factory=list)
    sep: str = " "
    """What joins the turns in the transcript: a space in the world (as its model was trained), a newline in
    a user's session file."""

    @property
    def transcript(self) -> str:
        return self.sep.join(f"{role}: {text}" if role else text for role, text in self.turns)


@dataclass
class World:
    """Entities by name, the session stream and the config that generated them."""

    config: WorldConfig
    entities: dict[str, Entity]
    sessions: list[Session]

    def split(self, name: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.split == name]

    @property
    def known(self) -> list[Entity]:
        return [e for e in self.entities.values() if e.split.startswith("known")]

    def updated_facts(self, upto: int | None = None) -> set[tuple[str, str]]:
        """(entity, attribute) pairs some session (of index <= `upto`, if given) updates: excluded from
        base-knowledge evaluation."""
        return {(f.entity, f.attribute) for s in self.sessions if upto is None or s.index <= upto for f in s.updates}

    def value(self, name: str, attribute: str, after_session: int | None = None) -> str:
        """The value of a fact, taking updates of sessions up to `after_session` (inclusive) into account."""
        value = self.entities[name].attrs[attribute]
        for s in self.sessions:
            if after_session is not None and s.index > after_session:
                break
            for f in s.updates:
                if f.entity == name and f.attribute == attribute:
                    value = f.value
        return value

    def bits(self) -> dict[str, float]:
        """Knowledge content in bits: sum of log2(choice-set size) over every fact, per split."""
        per_entity = sum(math.log2(len(s)) for s in ATTRIBUTE_SETS.values()) + math.log2(len(self.known))
        out: dict[str, float] = {}
        for e in self.entities.values():
            out[e.split] = out.get(e.split, 0.0) + per_entity
        out["updates"] = sum(math.log2(len(ATTRIBUTE_SETS[f.attribute])) for s in self.sessions for f in s.updates)
        return out

    def stats(self) -> dict[str, float | int]:
        """Counts of entities, facts and bits, as `retain world` prints them."""
        bits = self.bits()
        n_facts = len(self.entities) * len(ATTRIBUTES)
        return {
            "entities": len(self.entities),
            "known": len(self.known),
            "known_qa": len(self.split("known_qa")),
            "known_bio": len(self.split("known_bio")),
            "eval": len(self.split("eval")),
            "session_entities": len(self.split("session")),
            "sessions": len(self.sessions),
            "facts": n_facts,
            "updates": sum(len(s.updates) for s in self.sessions),
            "session_questions": sum(len(s.questions) for s in self.sessions),
            "bits_per_entity": round(bits.get("eval", 0.0) / max(1, len(self.split("eval"))), 2)
            if self.split("eval") else None,
            "bits_known": round(bits.get("known_qa", 0.0) + bits.get("known_bio", 0.0), 1),
            "bits_sessions": round(bits.get("session", 0.0) + bits["updates"], 1),
            "bits_total": round(sum(bits.values()), 1),
        }  # fmt: skip


def random_attrs(rng: random.Random, mentors: list[str]) -> dict[str, str]:
    """One entity's attribute values, drawn uniformly from each choice set."""
    attrs = {a: rng.choice(choices) for a, choices in ATTRIBUTE_SETS.items()}
    attrs["mentor"] = rng.choice(mentors)
    return attrs


@functools.cache
def all_names() -> tuple[str, ...]:
    """Every first-last name pair, in a fixed order (cached: example generation draws from it per person)."""
    return tuple(f"{f} {last}" for f in vocab.FIRST_NAMES for last in vocab.LAST_NAMES)


def reserved_names(world: World) -> set[str]:
    """Names of the world's entities; in-context training examples must invent other people."""
    return set(world.entities)


def build_world(cfg: WorldConfig) -> World:
    """Generate entities, mentors, and the session stream (with questions) from `cfg.seed`."""
    from retain.world.render import session_questions, session_turns

    rng = random.Random(derive_seed(cfg.seed, "entities"))
    names = list(all_names())
    rng.shuffle(names)
    n_session = cfg.n_sessions * cfg.new_per_session
    known_names = names[: cfg.n_known]
    eval_names = names[cfg.n_known : cfg.n_known + cfg.n_eval]
    session_names = names[cfg.n_known + cfg.n_eval : cfg.n_known + cfg.n_eval + n_session]

    n_qa = round(cfg.qa_fraction * cfg.n_known)
    entities: dict[str, Entity] = {}
    for i, name in enumerate(known_names):
        mentors = [m for m in known_names if m != name]
        entities[name] = Entity(name, random_attrs(rng, mentors), "known_qa" if i < n_qa else "known_bio")
    for name in eval_names + session_names:
        entities[name] = Entity(name, random_attrs(rng, known_names), "eval" if name in eval_names else "session")

    # Updates: each (known entity, attribute) at most once in the stream, to a different value.
    urng = random.Random(derive_seed(cfg.seed, "updates"))
    slots = [(n, a) for n in known_names for a in UPDATABLE]
    urng.shuffle(slots)
    sessions = []
    for i in range(cfg.n_sessions):
        srng = random.Random(derive_seed(cfg.seed, "session", i))
        new = session_names[i * cfg.new_per_session : (i + 1) * cfg.new_per_session]
        updates = []
        for name, attr in slots[i * cfg.updates_per_session : (i + 1) * cfg.updates_per_session]:
            old = entities[name].attrs[attr]
            updates.append(Fact(name, attr, srng.choice([v for v in ATTRIBUTE_SETS[attr] if v != old])))
        turns, facts = session_turns([entities[n] for n in new], updates, cfg.chatter_per_session, srng)
        session = Session(i, turns, new, facts, updates)
        session.questions = session_questions(session, entities, srng, cfg.question_forms)
        sessions.append(session)
    world = World(cfg, entities, sessions)
    if len(set(entities)) != len(entities):
        raise RetainError("internal: duplicate entity names")
    return world
