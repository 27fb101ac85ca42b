"""The inner loop of RL, batched: G fresh LoRA adapters trained at once, one forward pass over all of them.

Every adapted Linear gets a stack of G (A, B) pairs; row n of a batch goes through adapter `rows[n]`, so one
forward over G x b rows trains G independent adapters. Their losses are summed (adapter g sees only its own
rows), gradients are clipped per adapter, and AdamW is elementwise: the result matches G separate writes of
the `lora` medium (tests check it against PEFT). The inner loop is most of an episode's cost; batching is
what makes RL fit on two CPU cores (`benchmarks/rl.py` measures episodes per minute both ways).
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from retain.eval.qa import ask, encode
from retain.fermi.formulas import resolve_targets
from retain.memory import storage
from retain.memory.base import Material, MediumConfig
from retain.memory.weights import augment, sft_batch
from retain.models.device import autocast, to_model
from retain.models.text import text_format
from retain.rl.algorithms import mean_logprobs
from retain.world.world import Question


class BatchedLoRA(torch.nn.Module):
    """A frozen Linear plus G LoRA adapters: y = W x + (alpha / r) B_g A_g x for a row routed to adapter g."""

    def __init__(self, base: torch.nn.Linear, G: int, r: int, alpha: float, route: dict):
        super().__init__()
        self.base, self.scale, self.route = base, alpha / r, route
        self.A = torch.nn.Parameter(base.weight.new_empty(G, r, base.in_features, dtype=torch.float32))
        self.B = torch.nn.Parameter(base.weight.new_zeros(G, base.out_features, r, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.route["rows"].to(x.device)  # (N,) adapter of each row
        A, B = self.A[rows].to(x.dtype), self.B[rows].to(x.dtype)
        return self.base(x) + self.scale * torch.bmm(torch.bmm(x, A.transpose(1, 2)), B.transpose(1, 2))


class Adapters:
    """G fresh LoRA adapters installed on `model` (frozen) for the inner loop; `remove()` restores it.

    Initialised as PEFT does (A Kaiming-uniform, B zero) from `seeds[g]`: adapters sharing a seed start equal,
    so the self-edits of one group are compared from the same start (common random numbers)."""

    def __init__(self, model: torch.nn.Module, cfg: MediumConfig, seeds: list[int]):
        self.model, self.cfg, self.G = model, cfg, len(seeds)
        self.route = {"rows": torch.zeros(1, dtype=torch.long)}
        self.modules: list[tuple[torch.nn.Module, str, BatchedLoRA]] = []
        targets = set(resolve_targets(cfg.targets))
        model.requires_grad_(False)
        for name, module in list(model.named_modules()):
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets:
                parent = model.get_submodule(name.rsplit(".", 1)[0])
                lora = BatchedLoRA(module, self.G, cfg.rank, cfg.alpha, self.route)
                setattr(parent, name.rsplit(".", 1)[-1], lora)
                self.modules.append((parent, name.rsplit(".", 1)[-1], lora))
        with torch.no_grad():
            for g, seed in enumerate(seeds):
                gen = torch.Generator().manual_seed(seed)
                for _, _, lora in self.modules:  # drawn on the CPU: the same start on any device
                    a = torch.empty(lora.A.shape[1:])
                    lora.A[g].copy_(torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for _, _, lora in self.modules for p in (lora.A, lora.B)]

    def remove(self) -> None:
        """Put the original Linear modules back: the model is the base model again."""
        for parent, attr, lora in self.modules:
            setattr(parent, attr, lora.base)
        self.modules = []

    @contextmanager
    def routed(self, rows: torch.Tensor):
        """Inside the block, row n of every batch goes through adapter rows[n]."""
        old = self.route["rows"]
        self.route["rows"] = rows
        try:
            yield
        finally:
            self.route["rows"] = old

    def clip_(self, max_norm: float = 1.0) -> None:
        """Clip each adapter's gradient to `max_norm` on its own, as separate writes would."""
        params = [p for p in self.parameters() if p.grad is not None]
        norms = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in params]).sum(0).sqrt()  # (G,)
        factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(factor.view(-1, *[1] * (p.dim() - 1)))

    def train(self, tokenizer, materials: list[list[Material]], rngs: list[random.Random]) -> int:
        """Adapter g writes the sessions `materials[g]` in order, each with `cfg.steps` AdamW steps of
        next-token loss on copies augmented by `rngs[g]` (continued training, as the `lora` medium's single
        adapter). Every adapter gets the same number of sessions. Returns the tokens run."""
        rows = torch.arange(self.G).repeat_interleave(self.cfg.batch_size)
        tokens = 0
        self.model.train()
        with self.routed(rows):
            for stage in range(len(materials[0])):
                tokens += self._write(tokenizer, [ms[stage] for ms in materials], rngs)
        self.model.eval()
        return tokens

    def _write(self, tokenizer, materials: list[Material], rngs) -> int:
        """One session per adapter: a fresh AdamW (as each write of the medium) and `cfg.steps` steps."""
        cfg, params, tokens = self.cfg, self.parameters(), 0
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        for _ in range(cfg.steps):
            texts = [augment(m, cfg.augment, rng) for m, rng in zip(materials, rngs) for _ in range(cfg.batch_size)]
            ids, mask, labels = to_model(self.model, *sft_batch(tokenizer, texts))
            with autocast(ids.device):
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            ce = F.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                                 reduction="none").view(len(texts), -1)  # fmt: skip
            per_adapter = ce.sum(1).view(self.G, -1).sum(1) / mask[:, 1:].sum(1).view(self.G, -1).sum(1)
            per_adapter.sum().backward()  # adapter g's gradient is that of its own mean loss
            self.clip_(1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
        for g in range(self.G):  # each adapter stored at the medium's dtype, as the medium stores its own
            storage.store([t for _, _, lora in self.modules for t in (lora.A[g], lora.B[g])], cfg.dtype)
        return tokens

    @torch.no_grad()
    def answer(self, tokenizer, questions: list[list[Question]]) -> list[list[str]]:
        """Closed-book greedy answers of adapter g to `questions[g]`."""
        out = []
        for g, qs in enumerate(questions):
            with self.routed(torch.full((len(qs),), g, dtype=torch.long)):
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
            answers = [f[len(p):] for p, f in zip(prompts, full)]
            with self.routed(torch.full((len(qs),), g, dtype=torch.long)):
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
