"""Several LoRA adapters on one frozen model, trained in one forward: a stack of G (A, B) pairs per adapted
Linear, row n of a batch routed through adapter `rows[n]`.

Their losses are summed (adapter g sees only its rows), gradients are clipped per adapter and AdamW is
elementwise, so each adapter ends where it would have written alone. The RL inner loop trains G fresh
adapters this way (`retain.rl.lora`); `retain run` with `batch_writes: true` writes the LoRA media that differ
only in what they write (replay, augmentation, source) as one stack (`StackedLora`, `write_stacked`).
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from retain.fermi.formulas import lora_params, resolve_targets
from retain.memory import storage
from retain.memory.base import Material, MediumConfig, Timer, WriteCost
from retain.memory.weights import WeightMemory, sft_batch
from retain.models.device import autocast, to_model
from retain.runs.seed import derive_seed
from retain.train.optim import set_lr

Route = dict[str, "torch.Tensor | int | None"]


class BatchedLoRA(torch.nn.Module):
    """A frozen Linear plus G LoRA adapters: y = W x + (alpha / r) B_g A_g x, g the adapter of x's row (a
    tensor of one per row), of every row (an int), or none (None: the base Linear)."""

    def __init__(self, base: torch.nn.Linear, G: int, r: int, alpha: float, route: Route):
        super().__init__()
        self.base, self.scale, self.route = base, alpha / r, route
        self.A = torch.nn.Parameter(base.weight.new_empty(G, r, base.in_features, dtype=torch.float32))
        self.B = torch.nn.Parameter(base.weight.new_zeros(G, base.out_features, r, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.route["rows"]
        if rows is None:
            return self.base(x)
        if isinstance(rows, int):
            A, B = self.A[rows].to(x.dtype), self.B[rows].to(x.dtype)
            return self.base(x) + self.scale * (x @ A.T) @ B.T
        rows = rows.to(x.device)  # (N,) adapter of each row
        A, B = self.A[rows].to(x.dtype), self.B[rows].to(x.dtype)
        return self.base(x) + self.scale * torch.bmm(torch.bmm(x, A.transpose(1, 2)), B.transpose(1, 2))


class Stack:
    """G LoRA adapters installed on `model` (frozen); `remove()` restores it.

    Initialised as PEFT does (A Kaiming-uniform, B zero), adapter g from `seeds[g]` on the CPU: the same start
    on any device and in any stack, so adapters sharing a seed start equal."""

    def __init__(self, model: torch.nn.Module, cfg: MediumConfig, seeds: list[int]):
        self.model, self.cfg, self.G = model, cfg, len(seeds)
        self.route: Route = {"rows": torch.zeros(1, dtype=torch.long)}
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
                for _, _, lora in self.modules:
                    a = torch.empty(lora.A.shape[1:])
                    lora.A[g].copy_(torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for _, _, lora in self.modules for p in (lora.A, lora.B)]

    def adapter(self, g: int) -> list[torch.Tensor]:
        """Adapter g's tensors (views into the stack): A and B of every adapted Linear."""
        return [t for _, _, lora in self.modules for t in (lora.A[g], lora.B[g])]

    def remove(self) -> None:
        """Put the original Linear modules back: the model is the base model again."""
        for parent, attr, lora in self.modules:
            setattr(parent, attr, lora.base)
        self.modules = []

    @contextmanager
    def routed(self, rows: torch.Tensor | int | None):
        """Inside the block, row n of every batch goes through adapter rows[n] (an int: every row through that
        adapter; None: no adapter, the base model)."""
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

    def step(
        self, tokenizer, texts: dict[int, list[str]], opt: torch.optim.Optimizer, bos: bool = True
    ) -> dict[int, int]:
        """One AdamW step of each adapter g in `texts` on the next-token loss of its own `texts[g]` (one forward
        over all of them; adapter g's gradient is that of its own mean loss, the others get none). Returns
        the tokens each adapter ran."""
        rows = torch.tensor([g for g, ts in texts.items() for _ in ts])
        ids, mask, labels = to_model(self.model, *sft_batch(tokenizer, [t for ts in texts.values() for t in ts], bos))
        with self.routed(rows), autocast(ids.device):
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                             reduction="none").view(len(rows), -1).sum(1)  # fmt: skip
        at, counts = rows.to(ce.device), (labels[:, 1:] != -100).sum(1)
        per_adapter = counts.new_zeros(self.G).index_add(0, at, counts)  # the positions each adapter's mean is over
        (ce / per_adapter[at]).sum().backward()
        self.clip_(1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ran = mask.sum(1).cpu()
        return {g: int(ran[rows == g].sum()) for g in texts}

    def store(self, g: int, dtype: str) -> None:
        """Adapter g as stored at `dtype` (as the lora medium stores its own)."""
        storage.store(self.adapter(g), dtype)


STACK_KEYS = ("kind", "objective", "adapters", "rank", "alpha", "targets", "steps", "lr", "warmup", "lr_schedule")
"""What LoRA media must share to be written as one stack (the rest, such as replay, augment, source,
batch_size and dtype, may differ)."""


def stack_key(m: MediumConfig) -> tuple | None:
    """Media with the same key are written as one stack; None: this medium cannot be stacked (not an SFT
    write of one continued adapter, or one kept off the general inputs by `null_space`)."""
    if m.kind != "lora" or m.objective != "sft" or m.adapters != "single" or m.null_space:
        return None
    return tuple(getattr(m, k) for k in STACK_KEYS)


class StackedLora(WeightMemory):
    """Adapter g of a stack, as a medium: answers, log-likelihoods and logits go through that adapter alone,
    `bare()` through none. Writes are made for the whole stack at once (`write_stacked`)."""

    def __init__(self, stack: Stack, g: int, tokenizer, cfg: MediumConfig, **kw):
        super().__init__(stack.model, tokenizer, cfg, **kw)
        self.stack, self.g = stack, g

    def write(self, material: Material) -> WriteCost:
        return write_stacked([self], material)[0]

    def trainable(self) -> list[torch.Tensor]:
        return self.stack.adapter(self.g)

    def nbytes(self) -> int:
        return storage.stored_bytes(lora_params(self.arch, self.cfg.rank, self.cfg.targets), self.cfg.dtype)

    def liti_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # as the lora medium: scale * B A is linear in B, so B towards 0 is towards the base model
        return [(lora.B[self.g], torch.zeros_like(lora.B[self.g])) for _, _, lora in self.stack.modules]

    @contextmanager
    def bare(self):
        with self.stack.routed(None):
            yield self

    def answer(self, *args, **kwargs) -> list[str]:
        with self.stack.routed(self.g):
            return super().answer(*args, **kwargs)

    def nll(self, *args, **kwargs) -> float:
        with self.stack.routed(self.g):
            return super().nll(*args, **kwargs)

    def forward(self, ids, mask):
        with self.stack.routed(self.g):
            return super().forward(ids, mask)


def write_stacked(media: list[StackedLora], material: Material) -> list[WriteCost]:
    """Each medium of one stack writes `material` (as its `source` gives it): `steps` AdamW steps, a fresh
    optimizer per session as the lora medium, every step one forward over every medium's batch (its own
    texts, augmentation and replay, from its own seed). The time is shared out by the tokens each ran."""
    stack, tok = media[0].stack, media[0].tokenizer
    mats = [material.as_source(m.cfg.source) for m in media]
    rngs = [random.Random(derive_seed(m.seed, "write", m.cfg.name, material.session)) for m in media]
    opt = torch.optim.AdamW(stack.parameters(), lr=media[0].cfg.lr, weight_decay=0.0)
    tokens = [0] * len(media)
    stack.model.train()
    with Timer() as t:
        for i in range(media[0].cfg.steps):
            set_lr(opt, media[0].cfg.lr_at(i))
            ran = stack.step(tok, {m.g: m.batch_texts(mat, rng) for m, mat, rng in zip(media, mats, rngs)}, opt,
                             media[0].bos)  # fmt: skip
            tokens = [n + ran[m.g] for n, m in zip(tokens, media)]
        for m in media:
            stack.store(m.g, m.cfg.dtype)
    stack.model.eval()
    for m, mat in zip(media, mats):
        m.written.append(mat)
    total = sum(tokens) or 1
    return [WriteCost(t.seconds * n / total, n) for n in tokens]
