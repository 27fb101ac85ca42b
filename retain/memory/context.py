"""The in-context baseline: every session's material kept in the prompt, oldest dropped first past a budget.

Optionally with many-shot ICL (Agarwal et al. 2024): `shots` question-answer examples between the sessions
and the question. `many_shot` uses true answers; `reinforced` keeps only the shots the model itself answers
correctly (closed-book), with its own answers; `unsupervised` shows only the questions. Shots are drawn from
questions about known people, never from the sessions.

With `retrieve: k`, each question sees only the k held sessions that share the most rare words with it
(word overlap weighted by inverse document frequency over the held sessions), in their original order.
With `focus: entity`, it sees only the sentences that mention a name the question mentions (`focus`): a
reader that cannot tell two people's values apart (docs/log.md, binding) then sees one person.

Its memory is the KV cache of the context it holds: `kv_bytes_per_token` x tokens held (shots included);
retrieval shortens the prompt, not what is held.
"""

from __future__ import annotations

import random

from retain.eval.exact_match import exact_match
from retain.eval.qa import ask
from retain.fermi.formulas import kv_bytes_per_token
from retain.memory.base import Material, Memory, Timer, WriteCost
from retain.memory.names import focus, retrieve
from retain.runs.seed import derive_seed
from retain.world.world import Question


def session_block(material: Material, fmt=None) -> str:
    """One session in a prompt, as the base model read sessions in pretraining (or in the text format's way)."""
    return (
        fmt.session_block(material.session, material.text)
        if fmt
        else f"Session {material.session + 1}. {material.text}"
    )


class ContextMemory(Memory):
    """Materials in the prompt, newest kept, up to `budget_tokens` tokens (shots take theirs first)."""

    def __init__(self, model, tokenizer, cfg, shot_pool: list[Question] | None = None, seed: int = 0):
        super().__init__(model, tokenizer, cfg)
        self.blocks: list[tuple[str, int]] = []  # (text, tokens), oldest first
        self.shot_pool, self.seed = shot_pool or [], seed
        self._shots: tuple[str, int] | None = None  # (text, tokens), drawn on first use

    def ntokens(self, text: str) -> int:
        return len(self.tokenizer(" " + text, add_special_tokens=False)["input_ids"]) if text else 0

    def write(self, material: Material) -> WriteCost:
        with Timer() as t:
            text = session_block(material, self.fmt)
            self.blocks.append((text, self.ntokens(text)))
        return WriteCost(t.seconds, 0)

    def shots(self) -> str:
        """The shot block (empty without shots); drawn once, the same for every question."""
        return self._shot_block()[0]

    def _shot_block(self) -> tuple[str, int]:
        if self._shots is None:
            k, kind = self.cfg.shots, self.cfg.shot_kind
            pool = list(self.shot_pool)
            random.Random(derive_seed(self.seed, "shots", self.cfg.name)).shuffle(pool)
            if k and len(pool) < k:
                raise ValueError(f"media '{self.cfg.name}': {k} shots asked, the pool holds {len(pool)}")
            if kind == "reinforced" and k:  # the model's own closed-book answers, kept when correct
                preds = ask(self.model, self.tokenizer, pool)
                pool = [Question(q.text, p, q.kind, q.entity, q.attribute) for q, p in zip(pool, preds)
                        if exact_match(p, q.answer)]  # fmt: skip
            chosen = pool[:k]
            sep = self.fmt.block_separator
            text = sep.join(self.fmt.pair(q.text, None if kind == "unsupervised" else q.answer) for q in chosen)
            self._shots = (text, self.ntokens(text))
        return self._shots

    def kept(self) -> list[str]:
        """The newest blocks whose tokens fit the budget left by the shots, oldest first."""
        out, total = [], self._shot_block()[1]
        for text, n in reversed(self.blocks):
            if total + n > self.cfg.budget_tokens:
                break
            out.append(text)
            total += n
        return out[::-1]

    def context(self, question: Question) -> str | None:
        shots = self.shots()
        kept = self.kept()
        if self.cfg.retrieve:
            kept = retrieve(question.text, kept, self.cfg.retrieve)
        if self.cfg.focus == "entity":
            kept = [focus(" ".join(kept), question.text) or " ".join(kept)]  # no sentence names them: all
        return self.fmt.block_separator.join([k for k in kept if k] + ([shots] if shots else [])) or None

    def held_tokens(self) -> int:
        kept = len(self.kept())
        held = sum(n for _, n in self.blocks[len(self.blocks) - kept :]) if kept else 0
        return held + self._shot_block()[1]

    def nbytes(self) -> int:
        return int(kv_bytes_per_token(self.arch, self.cfg.dtype) * self.held_tokens())
