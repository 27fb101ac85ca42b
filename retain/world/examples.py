"""Training and evaluation examples drawn from a world, as text segments with a loss flag.

An example is a list of `(text, train)` segments: the tokenizer concatenates them and the loss applies
only where `train` is true (answers, summaries, biography text). Samplers take an explicit
`random.Random`; the pretraining mixture in `retain.train.data` calls them with a seed per step.

Formats (the same at training and evaluation time):
- closed-book QA: `Q: <question> A:` then ` <answer>` and the end-of-answer token.
- in-context QA: `<context> Q: ... A: <answer> <eos> Q: ... A: <answer> <eos>`.
- summary: `Transcript: <session> Notes:` then the notes.
"""

from __future__ import annotations

import random

from retain.world import render as R
from retain.world import templates as T
from retain.world.templates import UPDATABLE
from retain.world.world import ATTRIBUTE_SETS, Entity, Fact, Session, World, all_names, random_attrs

Segments = list[tuple[str, bool]]
EOS = "<eos>"  # placeholder segment: the tokenizer's end token, trained after each answer


def fresh_people(world: World, n: int, rng: random.Random, reserved: set[str]) -> list[Entity]:
    """People that exist only in this example: names outside the world's, random attributes; mentors are
    known entities so two-hop questions mix context with memory."""
    names = []
    pool = all_names()
    while len(names) < n:
        name = rng.choice(pool)
        if name not in reserved and name not in names:
            names.append(name)
    mentors = [e.name for e in world.known]
    return [Entity(name, random_attrs(rng, mentors), "fresh") for name in names]


def qa_segments(questions, train: bool = True, train_questions: bool = False) -> Segments:
    """`Q: ... A: answer <eos>` for each question; the loss covers answers (and questions if asked: in
    context, a question's name is a copy from the context, which trains the copying heads)."""
    segs: Segments = []
    for q in questions:
        segs += [(R.qa_prompt(q.text), train_questions), (" " + q.answer, train), (EOS, train)]
    return segs


def copy_example(rng: random.Random, min_len: int = 8, max_len: int = 24) -> Segments:
    """A random run of world words, then the same run again: the cheapest signal for the attention heads
    that find an earlier occurrence and copy what followed it (induction heads), which in-context reading
    is built from. The second half carries the loss."""
    from retain.world import vocab

    pool = vocab.FIRST_NAMES + vocab.LAST_NAMES + vocab.CITIES + vocab.EMPLOYERS + vocab.FIELDS + vocab.YEARS
    run = " ".join(rng.choice(pool) for _ in range(rng.randint(min_len, max_len)))
    return [(run, False), (" " + run, True), (EOS, True)]


def bio_example(entity: Entity, rng: random.Random) -> Segments:
    return [(R.bio(entity, rng), True), (EOS, True)]


def closed_qa_example(entity: Entity, world: World, rng: random.Random, n: int = 3) -> Segments:
    """A few closed-book questions about a known entity (recall, sometimes two-hop)."""
    forms = world.config.question_forms
    attrs = rng.sample(list(entity.attrs), k=min(n, len(entity.attrs)))
    qs = [R.question(entity.name, a, entity.attrs[a], rng, forms=forms) for a in attrs]
    if rng.random() < 0.3:
        mentor = world.entities[entity.attrs["mentor"]]
        attr = rng.choice(list(R.T.TWO_HOP))
        qs.append(R.two_hop_question(entity.name, attr, mentor.attrs[attr], rng, forms=forms))
    return qa_segments(qs)


def icl_bio_example(world: World, rng: random.Random, reserved: set[str], max_people: int = 3) -> Segments:
    """Biographies of 1..max_people fresh people in context, then questions about them."""
    forms = world.config.question_forms
    people = fresh_people(world, rng.randint(1, max_people), rng, reserved)
    context = " ".join(R.bio(p, rng) for p in people)
    qs = [R.question(p.name, a, v, rng, forms=forms) for p in people for a, v in p.attrs.items()]
    if len(people) >= 2 and rng.random() < 0.5:
        q = R.compare_question(people[0], people[1], rng, forms=forms)
        if q:
            qs.append(q)
    if rng.random() < 0.3:
        p = rng.choice(people)
        mentor = world.entities[p.attrs["mentor"]]
        qs.append(R.two_hop_question(p.name, "birth_city", mentor.attrs["birth_city"], rng, forms=forms))
    rng.shuffle(qs)
    return [(context, True)] + qa_segments(qs, train_questions=True)


_BY_SET: dict[int, list[str]] = {}
for _attr, _choices in ATTRIBUTE_SETS.items():
    _BY_SET.setdefault(id(_choices), []).append(_attr)
SHARED_SETS = [group for group in _BY_SET.values() if len(group) > 1]
"""Attributes drawn from one choice set (the birth city and the home city): only the relation tells their
values apart in a context."""


def icl_facts_example(world: World, rng: random.Random, reserved: set[str], max_facts: int = 3,
                      contrast: float = 0.0, max_people: int = 2, contrast_adds: bool = False) -> Segments:  # fmt: skip
    """1..max_people fresh people with 1..max_facts facts each (geometric: half have one), sentences shuffled
    together, then a question per fact. The short context gives a strong, early gradient to the heads that copy a
    value out of the context; full biographies alone leave a long plateau first (docs/log.md). With probability
    `contrast` a person states instead every attribute of one shared choice set (`SHARED_SETS`: born in one
    city, living in another), so the answer must be bound to the relation asked, not to the value's type; with
    `contrast_adds` that pair comes on top of the person's other facts instead of replacing them, so the contrast
    takes no share from the other attributes' reading."""
    forms = world.config.question_forms
    people = fresh_people(world, rng.randint(1, max_people), rng, reserved)
    sentences, qs = [], []
    for p in people:
        k = 1
        while k < max_facts and rng.random() < 0.5:  # mostly one or two facts: a short context
            k += 1
        chosen = rng.sample(list(p.attrs), k=k)
        if SHARED_SETS and contrast and rng.random() < contrast:
            shared = rng.choice(SHARED_SETS)
            chosen = list(shared) + [a for a in chosen if a not in shared] if contrast_adds else shared
        for a in chosen:
            sentences.append(R.fact_sentence(p.name, a, p.attrs[a], rng))
            qs.append(R.question(p.name, a, p.attrs[a], rng, forms=forms))
    rng.shuffle(sentences)
    rng.shuffle(qs)
    return [(" ".join(sentences), True)] + qa_segments(qs, train_questions=True)


def icl_relation_example(world: World, rng: random.Random, reserved: set[str]) -> Segments:
    """One or two fresh people, each born in one city and living in another (sometimes with one more fact),
    then for each city both the question on it and its reverse, "What is <city> to <name>?" (birthplace or
    home). The reverse question needs the relation stored at the city's position, the key a forward question
    should retrieve the city by. Bases that answer one city for the other store it but do not retrieve by it,
    and this example did not change that (docs/world.md)."""
    forms = world.config.question_forms
    sentences, qs = [], []
    for p in fresh_people(world, rng.randint(1, 2), rng, reserved):
        shared = rng.choice(SHARED_SETS)
        attrs = dict(p.attrs, **dict(zip(shared, rng.sample(ATTRIBUTE_SETS[shared[0]], len(shared)))))  # distinct
        chosen = list(shared)
        if rng.random() < 0.5:
            chosen.append(rng.choice([a for a in attrs if a not in chosen]))
        for a in chosen:
            sentences.append(R.fact_sentence(p.name, a, attrs[a], rng))
            qs.append(R.question(p.name, a, attrs[a], rng, forms=forms))
            if a in T.RELATION_WORD:
                qs.append(R.relation_question(p.name, a, attrs[a]))
    rng.shuffle(sentences)
    rng.shuffle(qs)
    return [(" ".join(sentences), True)] + qa_segments(qs, train_questions=True)


def binding_context(world: World, rng: random.Random, reserved: set[str], n_people: int,
                    n_attrs: int = 1) -> tuple[str, list[R.Question]]:  # fmt: skip
    """`n_people` fresh people stated with the *same* attributes, sentences shuffled, and a question on each
    of their facts. Only the name tells the values apart, so answering needs the value bound to its person."""
    forms = world.config.question_forms
    people = fresh_people(world, n_people, rng, reserved)
    attrs = rng.sample(list(people[0].attrs), k=n_attrs)
    sentences = [R.fact_sentence(p.name, a, p.attrs[a], rng) for p in people for a in attrs]
    rng.shuffle(sentences)
    return " ".join(sentences), [R.question(p.name, a, p.attrs[a], rng, forms=forms) for p in people for a in attrs]


def icl_binding_example(world: World, rng: random.Random, reserved: set[str], max_people: int = 8) -> Segments:
    """A binding context of 2..max_people people (one or two shared attributes), then questions on up to four
    of them. One-person contexts never teach binding, and the model then answers a session's question with
    another person's value of the right type (docs/log.md)."""
    context, qs = binding_context(world, rng, reserved, rng.randint(2, max_people), rng.randint(1, 2))
    qs = rng.sample(qs, k=min(len(qs), 4))
    return [(context, True)] + qa_segments(qs, train_questions=True)


def fresh_session(world: World, rng: random.Random, reserved: set[str], index: int,
                  new_people: int = 2, n_updates: int = 1, n_chatter: int = 2,
                  earlier: list[Entity] | None = None) -> tuple[Session, list[Entity]]:  # fmt: skip
    """A session like the stream's, about fresh people; updates hit known entities or people of earlier
    sessions in the same context."""
    people = fresh_people(world, new_people, rng, reserved)
    reserved |= {p.name for p in people}
    targets = list(world.known) + list(earlier or [])
    updates = []
    for _ in range(n_updates):
        e = rng.choice(targets)
        attr = rng.choice(UPDATABLE)
        updates.append(Fact(e.name, attr, rng.choice([v for v in ATTRIBUTE_SETS[attr] if v != e.attrs[attr]])))
    turns, facts = R.session_turns(people, updates, n_chatter, rng)
    return Session(index, turns, [p.name for p in people], facts, updates), people


def session_context(sessions: list[Session]) -> str:
    """Several transcripts in one prompt, oldest first."""
    return " ".join(f"Session {s.index + 1}. {s.transcript}" for s in sessions)


def icl_session_example(world: World, rng: random.Random, reserved: set[str], max_sessions: int = 3) -> Segments:
    """1..max_sessions sessions in context, then questions on any of them; an update must beat both the
    model's memory and an earlier session."""
    forms = world.config.question_forms
    reserved = set(reserved)
    sessions, everyone = [], []
    for i in range(rng.randint(1, max_sessions)):
        s, people = fresh_session(world, rng, reserved, i, world.config.new_per_session, rng.randint(0, 2),
                                  rng.randint(0, 2), earlier=everyone)  # fmt: skip
        sessions.append(s)
        everyone += people
    current = {p.name: dict(p.attrs) for p in everyone}
    for s in sessions:
        for f in s.updates:
            current.setdefault(f.entity, dict(world.entities[f.entity].attrs) if f.entity in world.entities else {})
            current[f.entity][f.attribute] = f.value
    qs = []
    for _ in range(rng.randint(3, 6)):
        s = rng.choice(sessions)
        if s.updates and rng.random() < 0.35:
            f = rng.choice(s.updates)
            qs.append(
                R.question(f.entity, f.attribute, current[f.entity][f.attribute], rng, kind="update", forms=forms)
            )
        else:
            p = rng.choice([e for e in everyone if e.name in s.new_entities])
            attr = rng.choice(list(p.attrs))
            qs.append(R.question(p.name, attr, current[p.name][attr], rng, forms=forms))
    return [(session_context(sessions), True)] + qa_segments(qs, train_questions=True)


def summary_notes(session: Session, budget_words: int | None) -> str:
    """The generic summary a reader would keep: the session's facts in the order stated, one plain
    sentence each, chatter dropped, cut at the last whole sentence within `budget_words` words."""
    out, words = [], 0
    for s in R.oracle_sentences(session):
        n = len(s.split())
        if budget_words is not None and words + n > budget_words:
            break
        out.append(s)
        words += n
    return " ".join(out)


def summary_prompt(transcript: str) -> str:
    return f"Transcript: {transcript} Notes:"


def summary_example(world: World, rng: random.Random, reserved: set[str], budget_words: int | None) -> Segments:
    """A fresh session's transcript, then its generic summary."""
    s, _ = fresh_session(
        world, rng, set(reserved), 0, world.config.new_per_session, rng.randint(0, 2), rng.randint(0, 2)
    )
    return [(summary_prompt(s.transcript), False), (" " + summary_notes(s, budget_words), True), (EOS, True)]


# ---- evaluation sets: (context or None, question) pairs -------------------------------------------------

Item = tuple[str | None, "R.Question"]


def closed_book_items(entities: list[Entity], world: World, rng: random.Random, heldout: bool = False,
                      two_hop: bool = True, n_compare: int = 0) -> list[Item]:  # fmt: skip
    """Recall on every attribute of each entity, plus two-hop and comparison questions, no context."""
    forms = world.config.question_forms
    items: list[Item] = [(None, q) for e in entities for q in R.entity_questions(e, rng, heldout, forms=forms)]
    if two_hop:
        for e in entities:
            attr = rng.choice(list(R.T.TWO_HOP))
            items.append((None, R.two_hop_question(e.name, attr, world.entities[e.attrs["mentor"]].attrs[attr], rng,
                                                   heldout, forms=forms)))  # fmt: skip
    for _ in range(n_compare):
        a, b = rng.sample(entities, 2)
        q = R.compare_question(a, b, rng, heldout, forms=forms)
        if q:
            items.append((None, q))
    return items


def open_book_items(entities: list[Entity], world: World, rng: random.Random, heldout: bool = False) -> list[Item]:
    """Each entity's biography in context (held-out templates if `heldout`), then recall on every attribute,
    a two-hop question, and a comparison with a second entity whose biography is also in context."""
    forms = world.config.question_forms
    items: list[Item] = []
    for i, e in enumerate(entities):
        context = R.bio(e, rng, heldout)
        items += [(context, q) for q in R.entity_questions(e, rng, heldout, forms=forms)]
        mentor = world.entities[e.attrs["mentor"]]
        items.append(
            (context, R.two_hop_question(e.name, "birth_city", mentor.attrs["birth_city"], rng, heldout, forms=forms))
        )
        other = entities[(i + 1) % len(entities)]
        q = R.compare_question(e, other, rng, heldout, forms=forms)
        if q and other is not e:
            items.append((R.bio(e, rng, heldout) + " " + R.bio(other, rng, heldout), q))
    return items


def session_items(sessions: list[Session]) -> list[Item]:
    """Each stream session's transcript in context, then its own questions."""
    return [(session_context([s]), q) for s in sessions for q in s.questions]


def binding_items(world: World, rng: random.Random, n_contexts: int = 24, n_people: int = 4) -> list[Item]:
    """Binding contexts of `n_people` fresh people with one shared attribute, a question on each: a reader
    that finds the right type of value but not the right person scores 1 / n_people."""
    items: list[Item] = []
    for _ in range(n_contexts):
        context, qs = binding_context(world, rng, set(world.entities), n_people)
        items += [(context, q) for q in qs]
    return items


def stream_items(sessions: list[Session]) -> list[Item]:
    """The whole stream in context, oldest first, then every session's questions: the in-context baseline
    of the continual loop once it has seen every session."""
    context = session_context(sessions)
    return [(context, q) for s in sessions for q in s.questions]
