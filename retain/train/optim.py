"""Optimizer and learning-rate schedule shared by every training loop."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from retain.models.device import bf16_is_native


def adamw(params: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
          betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:  # fmt: skip
    """AdamW with weight decay on matrices only (not on norms, biases or 1-D prompt vectors)."""
    decay, no_decay = [], []
    for _, p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def orthogonalize(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16,
                  coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)) -> torch.Tensor:  # fmt: skip
    """Muon's quintic Newton-Schulz iteration: roughly U V^T of g = U S V^T, computed in `dtype`."""
    a, b, c = coefficients
    x = g.to(dtype)
    wide = g.size(0) > g.size(1)
    if wide:
        x = x.T
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if wide else x


class Muon(torch.optim.Optimizer):
    """Muon (Keller Jordan; torch.optim.Muon's update with `adjust_lr_fn="match_rms_adamw"`, Moonshot's
    scaling so that AdamW's learning rate serves): Nesterov momentum, the update orthogonalised by
    Newton-Schulz, decoupled weight decay. Our own only to choose the Newton-Schulz dtype: torch's is
    bf16 always, which a CPU without bf16 hardware emulates at ~1 s a step for the tiny model. In bf16 it
    equals torch.optim.Muon bit for bit (tests/test_optim.py)."""

    def __init__(self, params, lr: float, weight_decay: float, momentum: float = 0.95,
                 ns_dtype: torch.dtype = torch.bfloat16):  # fmt: skip
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - mu)
                update = orthogonalize(p.grad.lerp(buf, mu), dtype=self.ns_dtype)
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))


class MuonAdamW:
    """Muon on the hidden weight matrices, AdamW on everything else (embeddings, head, norms), stepped
    together. Muon orthogonalises each matrix update (Newton-Schulz), which trains small transformers in
    fewer steps than AdamW (Keller Jordan's nanoGPT speedruns, nanochat). `adjust_lr_fn="match_rms_adamw"`
    scales Muon's update to AdamW's RMS, so one learning rate serves both.

    Quacks like one optimizer for the loop and the checkpoint code: `param_groups` lists both optimizers'
    groups, and `state_dict` merges both with parameter ids renumbered to be unique."""

    def __init__(self, named_params: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                 ns_dtype: torch.dtype = torch.bfloat16):  # fmt: skip
        hidden, rest = [], []
        for name, p in named_params:
            if p.requires_grad:
                is_hidden = p.ndim == 2 and "embed" not in name and "lm_head" not in name
                (hidden if is_hidden else rest).append((name, p))
        self.optimizers = [Muon([p for _, p in hidden], lr, weight_decay, ns_dtype=ns_dtype),
                           adamw(rest, lr, weight_decay)]  # fmt: skip

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            sd = o.state_dict()
            state.update({offset + pid: v for pid, v in sd["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in sd["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups, offset = list(sd["param_groups"]), 0
        for o in self.optimizers:
            mine, groups = groups[: len(o.param_groups)], groups[len(o.param_groups) :]
            n = sum(len(g["params"]) for g in mine)
            state = {pid - offset: v for pid, v in sd["state"].items() if offset <= pid < offset + n}
            mine = [{**g, "params": [i - offset for i in g["params"]]} for g in mine]
            o.load_state_dict({"state": state, "param_groups": mine})
            offset += n


def make_optimizer(kind: str, named_params: Iterable[tuple[str, torch.nn.Parameter]], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer | MuonAdamW:  # fmt: skip
    """`adamw` or `muon` (Muon on hidden matrices + AdamW on the rest; its Newton-Schulz in bf16 where the
    parameters' device has bf16 hardware, in fp32 elsewhere)."""
    named_params = list(named_params)
    if kind == "muon":
        bf16 = bf16_is_native(named_params[0][1].device.type)
        return MuonAdamW(named_params, lr, weight_decay, torch.bfloat16 if bf16 else torch.float32)
    return adamw(named_params, lr, weight_decay)


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_ratio * lr` at `total` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
