"""World facts rendered as text: biographies, questions, session transcripts, summaries and prompts.

Every function takes an explicit `random.Random`; `heldout=True` draws only from the held-out templates.
The prompt format is the same for every model: `<context> Q: <question> A:` and the answer follows.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from retain.world import templates as T
from retain.world.vocab import CHATTER, MONTHS, REPLIES

if TYPE_CHECKING:
    from retain.world.world import Entity, Fact, Question, Session


def fact_sentence(name: str, attribute: str, value: str, rng: random.Random, heldout: bool = False) -> str:
    return rng.choice(T.split(T.BIO[attribute], heldout)).format(name=name, value=value)


def update_sentence(name: str, attribute: str, value: str, rng: random.Random, heldout: bool = False) -> str:
    return rng.choice(T.split(T.UPDATE[attribute], heldout)).format(name=name, value=value)


def bio(entity: Entity, rng: random.Random, heldout: bool = False) -> str:
    """A biography: one sentence per attribute, in shuffled order, each from a random template."""
    attrs = list(entity.attrs)
    rng.shuffle(attrs)
    return " ".join(fact_sentence(entity.name, a, entity.attrs[a], rng, heldout) for a in attrs)


def question(name: str, attribute: str, answer: str, rng: random.Random, heldout: bool = False,
             kind: str = "recall", forms: int = 4) -> Question:  # fmt: skip
    """A question on one attribute in a random phrasing of the world's `forms` (WorldConfig.question_forms)."""
    from retain.world.world import Question

    text = rng.choice(T.split(T.phrasings(forms).question[attribute], heldout)).format(name=name)
    return Question(text, answer, kind, name, attribute, heldout)


def relation_question(name: str, attribute: str, value: str) -> Question:
    """Which relation `value` stands in to `name` (`RELATION_WORD`: birthplace or home)."""
    from retain.world.world import Question

    text = T.RELATION_QUESTION.format(name=name, value=value)
    return Question(text, T.RELATION_WORD[attribute], "relation", name, attribute, False)


def two_hop_question(name: str, attribute: str, answer: str, rng: random.Random, heldout: bool = False,
                     forms: int = 4) -> Question:  # fmt: skip
    """An attribute of the mentor of `name`; `answer` is the mentor's value."""
    from retain.world.world import Question

    text = rng.choice(T.split(T.phrasings(forms).two_hop[attribute], heldout)).format(name=name)
    return Question(text, answer, "two_hop", name, attribute, heldout)


def date_key(date: str) -> tuple[int, int, int]:
    day, month, year = date.split()
    return int(year), MONTHS.index(month), int(day)


def compare_question(a: Entity, b: Entity, rng: random.Random, heldout: bool = False,
                     forms: int = 4) -> Question | None:  # fmt: skip
    """Who was born earlier; None when the two share a birth date (no single answer)."""
    from retain.world.world import Question

    ka, kb = date_key(a.attrs["birth_date"]), date_key(b.attrs["birth_date"])
    if ka == kb:
        return None
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    text = rng.choice(T.split(T.phrasings(forms).compare, heldout)).format(name=first.name, other=second.name)
    return Question(text, a.name if ka < kb else b.name, "compare", f"{a.name}|{b.name}", "birth_date", heldout)


def entity_questions(entity: Entity, rng: random.Random, heldout: bool = False, forms: int = 4) -> list[Question]:
    """One recall question per attribute of `entity`."""
    return [question(entity.name, a, v, rng, heldout, forms=forms) for a, v in entity.attrs.items()]


def session_turns(new: list[Entity], updates: list[Fact], n_chatter: int, rng: random.Random,
                  heldout: bool = False) -> tuple[list[tuple[str, str]], list[Fact]]:  # fmt: skip
    """A transcript: one user turn per new entity (intro + its facts), one per update, and chatter turns,
    shuffled, each answered by the assistant. Returns the turns and the facts in the order stated."""
    from retain.world.world import Fact

    blocks: list[tuple[str, list[Fact]]] = []
    for e in new:
        attrs = list(e.attrs)
        rng.shuffle(attrs)
        intro = rng.choice(T.split(T.INTRO, heldout)).format(name=e.name)
        text = " ".join([intro] + [fact_sentence(e.name, a, e.attrs[a], rng, heldout) for a in attrs])
        blocks.append((text, [Fact(e.name, a, e.attrs[a]) for a in attrs]))
    for f in updates:
        blocks.append((update_sentence(f.entity, f.attribute, f.value, rng, heldout), [f]))
    for _ in range(n_chatter):
        blocks.append((rng.choice(CHATTER), []))
    rng.shuffle(blocks)
    turns, facts = [], []
    for text, block_facts in blocks:
        turns += [("User", text), ("Assistant", rng.choice(REPLIES))]
        facts += block_facts
    return turns, facts


def session_questions(session: Session, entities: dict[str, Entity], rng: random.Random,
                      forms: int = 4) -> list[Question]:  # fmt: skip
    """Recall on every new fact, every update, a two-hop question per new entity, a comparison."""
    new = [entities[n] for n in session.new_entities]
    qs = [q for e in new for q in entity_questions(e, rng, forms=forms)]
    qs += [question(f.entity, f.attribute, f.value, rng, kind="update", forms=forms) for f in session.updates]
    for e in new:
        mentor = entities[e.attrs["mentor"]]
        qs.append(two_hop_question(e.name, "birth_city", mentor.attrs["birth_city"], rng, forms=forms))
    if len(new) >= 2:
        q = compare_question(new[0], new[1], rng, forms=forms)
        if q is not None:
            qs.append(q)
    return qs


def canonical_sentence(f: Fact) -> str:
    """The plainest rendering of a fact (first template), used for oracle material and summaries."""
    return T.BIO[f.attribute][0].format(name=f.entity, value=f.value)


def oracle_sentences(session: Session) -> list[str]:
    """The session's facts in the order stated, one canonical sentence each (updates phrased as updates)."""
    update_keys = {(u.entity, u.attribute) for u in session.updates}
    return [
        T.UPDATE[f.attribute][0].format(name=f.entity, value=f.value)
        if (f.entity, f.attribute) in update_keys
        else canonical_sentence(f)
        for f in session.facts
    ]


def oracle_notes(session: Session) -> str:
    """All of the session's facts as plain sentences: the oracle material, an upper bound."""
    return " ".join(oracle_sentences(session))


def qa_prompt(question_text: str, context: str | None = None) -> str:
    """The prompt every model answers: optional context, then `Q: ... A:`."""
    return f"{context} Q: {question_text} A:" if context else f"Q: {question_text} A:"
