"""Base-knowledge text for replay, as pretraining showed it: biographies of known people and closed-book
question-answer pairs of the QA split."""

from __future__ import annotations

import random

from retain.world import render as R
from retain.world.world import Entity, World


class Rehearsal:
    """`rehearsal(rng)`: one base-knowledge text, half a biography of a known person, half a QA pair of a
    known person of the QA split. A fact a session already read updates is no longer rehearsed (its value
    would be stale); the person's other facts are. What it knows of the sessions is only what the loop has
    read: `upto(i)` before session i is written, so no write learns which facts a later session changes.
    A `retain.memory.base.ReplaySource`, indexed by name."""

    indexed = True

    def __init__(self, world: World):
        self.world = world
        self.upto(-1)

    def upto(self, session: int) -> None:
        """The sessions of index <= `session` have been read: leave out the facts they update."""
        self.updated = self.world.updated_facts(upto=session)
        self.touched = {e for e, _ in self.updated}
        people = [e for e in self.world.known if self.facts(e)]
        whole = [e for e in people if e.name not in self.touched]
        # (people, those of the QA split) for each pool, so a draw does not filter on the hot path
        self.people, self.whole = [(p, [e for e in p if e.split == "known_qa"]) for p in (people, whole)]

    def stale(self, text: str) -> bool:
        """Whether `text` names a person a read session updates: replay made before that session (the bare
        model's answers about them) may hold the old value."""
        return any(name in text for name in self.touched)

    def facts(self, e: Entity) -> list[str]:
        """The attributes of `e` that no session read so far updates."""
        return [a for a in e.attrs if (e.name, a) not in self.updated]

    def __call__(self, rng: random.Random) -> str:
        return self.draw(rng, self.people)

    def settled(self, rng: random.Random) -> str:
        """A text about someone no session updates: what the base model says about them is never stale, so it
        can be studied (asked about, `base_study`) without pulling an update back."""
        return self.draw(rng, self.whole)

    def about(self, names: set[str]):
        """A drawer of texts about the known people among `names` only (`draw(rng)`), or None when none of
        them is a known person."""
        people = [e for e in self.people[0] if e.name in names]
        if not people:
            return None
        pool = (people, [e for e in people if e.split == "known_qa"])
        return lambda rng: self.draw(rng, pool)

    def asked(self, text: str) -> bool:
        """The world asks a question with nothing in front: its QA pairs are replayed as they are."""
        return False

    def draw(self, rng: random.Random, pool: tuple[list[Entity], list[Entity]]) -> str:
        people, qa = pool
        if rng.random() < 0.5 or not qa:  # a biography without the updated facts
            e = rng.choice(people)
            attrs = self.facts(e)
            rng.shuffle(attrs)
            return " ".join(R.fact_sentence(e.name, a, e.attrs[a], rng) for a in attrs)
        e = rng.choice(qa)
        attr = rng.choice(self.facts(e))
        return (
            R.qa_prompt(R.question(e.name, attr, e.attrs[attr], rng, forms=self.world.config.question_forms).text)
            + " "
            + e.attrs[attr]
        )


class TextRehearsal:
    """Base-knowledge text for replay on a model without a world: half the model's own text (sampled once from
    the bare model after its start token at temperature 1, `own_texts`: what it writes when nothing is asked,
    so replaying it holds the model near itself on whatever it knows), half question-answer pairs from the
    probe's pool (never the evaluated questions). Nothing here changes with the sessions read: every text is
    settled, none is stale. A `retain.memory.base.ReplaySource`, not indexed by name."""

    indexed = False

    def __init__(self, texts: list[str], pairs: list[str]):
        if not texts and not pairs:
            raise ValueError("TextRehearsal needs texts or question-answer pairs")
        self.texts, self.pairs, self._pairs = texts, pairs, frozenset(pairs)

    def upto(self, session: int) -> None:
        """Nothing to leave out: no session updates what this text says."""

    def __call__(self, rng: random.Random) -> str:
        pool = self.pairs if self.pairs and (not self.texts or rng.random() < 0.5) else self.texts
        return rng.choice(pool)

    settled = __call__

    def stale(self, text: str) -> bool:
        return False

    def about(self, names: set[str]) -> None:
        return None

    def asked(self, text: str) -> bool:
        """Whether `text` is one of the probe pool's question-answer pairs (not the model's own text)."""
        return text in self._pairs


def own_texts(model, tokenizer, n: int, tokens: int, seed: int) -> list[str]:
    """`n` texts of at most `tokens` tokens that the model writes after its start token alone (temperature 1)."""
    import torch

    from retain.models.generate import generate
    from retain.models.text import text_format

    fmt = text_format(tokenizer)
    out = generate(model, [list(fmt.start)] * n, eos_id=[fmt.end], pad_id=tokenizer.pad_token_id,
                   max_new_tokens=tokens, do_sample=True, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    texts = [tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]
    return [t for t in texts if t]
