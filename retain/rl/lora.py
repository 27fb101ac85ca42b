"""The inner loop of RL, batched: G fresh LoRA adapters trained at once, one forward pass over all of them.

The adapters are a `retain.memory.stacked.Stack`: one forward over G x b rows trains G independent adapters,
and the result matches G separate writes of the `lora` medium (tests check it against PEFT). The inner loop is
most of an episode's cost; batching is what makes RL fit on two CPU cores (`benchmarks/rl.py` measures episodes
per minute both ways).
"""

from __future__ import annotations

import random

import torch

from retain.eval.qa import ask, encode
from retain.memory.base import Material, MediumConfig
from retain.memory.stacked import Stack
from retain.memory.weights import augment
from retain.models.text import text_format
from retain.rl.algorithms import mean_logprobs
from retain.world.world import Question


class Adapters(Stack):
    """G fresh LoRA adapters installed on `model` (frozen) for the inner loop (`retain.memory.stacked.Stack`);
    adapters sharing a seed start equal, so the self-edits of one group are compared from the same start
    (common random numbers)."""

    def train(self, tokenizer, materials: list[list[Material]], rngs: list[random.Random]) -> int:
        """Adapter g writes the sessions `materials[g]` in order, each with `cfg.steps` AdamW steps of
        next-token loss on copies augmented by `rngs[g]` (continued training, as the `lora` medium's single
        adapter). Every adapter gets the same number of sessions. Returns the tokens run."""
        tokens = 0
        self.model.train()
        for stage in range(len(materials[0])):
            tokens += self._write(tokenizer, [ms[stage] for ms in materials], rngs)
        self.model.eval()
        return tokens

    def _write(self, tokenizer, materials: list[Material], rngs) -> int:
        """One session per adapter: a fresh AdamW (as each write of the medium) and `cfg.steps` steps."""
        cfg, tokens = self.cfg, 0
        opt = torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=0.0)
        for _ in range(cfg.steps):
            texts = {g: [augment(m, cfg.augment, rng) for _ in range(cfg.batch_size)]
                     for g, (m, rng) in enumerate(zip(materials, rngs))}  # fmt: skip
            tokens += sum(self.step(tokenizer, texts, opt).values())
        for g in range(self.G):  # each adapter stored at the medium's dtype, as the medium stores its own
            self.store(g, cfg.dtype)
        return tokens

    @torch.no_grad()
    def answer(self, tokenizer, questions: list[list[Question]]) -> list[list[str]]:
        """Closed-book greedy answers of adapter g to `questions[g]`."""
        out = []
        for g, qs in enumerate(questions):
            with self.routed(g):
                out.append(ask(self.model, tokenizer, qs, batch_size=len(qs), share=False))
        return out

    @torch.no_grad()
    def answer_logprob(self, tokenizer, questions: list[list[Question]]) -> list[float]:
        """Adapter g's log-probability of the right answers to `questions[g]`, per answer token, averaged over
        its questions: a graded recall (a fact learned half-way scores between absent and learned)."""
        out = []
        for g, qs in enumerate(questions):
            fmt = text_format(tokenizer)
            prompts = [encode(tokenizer, "".join(fmt.prompt(q.text))) for q in qs]
            full = [encode(tokenizer, fmt.qa_text(q.text, q.answer)) for q in qs]
            answers = [f[len(p) :] for p, f in zip(prompts, full)]
            with self.routed(g):
                out.append(float(mean_logprobs(self.model, prompts, answers, tokenizer.pad_token_id).mean()))
        return out


def write_and_answer(model, tokenizer, cfg: MediumConfig, materials: list[list[Material]],
                     questions: list[list[Question]], seeds: list[int],
                     batched: bool = True) -> tuple[list, list[float], int]:  # fmt: skip
    """Write the sessions `materials[g]` (in order) into fresh adapter g (initialised from `seeds[g]`,
    augmented from the same seed) and ask it `questions[g]`: all G in one batched loop, or one after another
    (`batched=False`, the baseline of the efficiency benchmark). Returns the answers, each adapter's
    log-probability of the right answers (`Adapters.answer_logprob`) and the tokens trained on."""
    groups = [list(range(len(seeds)))] if batched else [[g] for g in range(len(seeds))]
    answers: list[list[str]] = [[] for _ in seeds]
    logprobs = [0.0] * len(seeds)
    tokens = 0
    for group in groups:
        adapters = Adapters(model, cfg, [seeds[g] for g in group])
        try:
            rngs = [random.Random(seeds[g]) for g in group]
            tokens += adapters.train(tokenizer, [materials[g] for g in group], rngs)
            qs = [questions[g] for g in group]
            for g, a, lp in zip(group, adapters.answer(tokenizer, qs), adapters.answer_logprob(tokenizer, qs)):
                answers[g], logprobs[g] = a, lp
        finally:
            adapters.remove()
    return answers, logprobs, tokens
