"""Optimizer and learning-rate schedule shared by every training loop."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def adamw(params: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
          betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:  # fmt: skip
    """AdamW with weight decay on matrices only (not on norms, biases or 1-D prompt vectors)."""
    decay, no_decay = [], []
    for _, p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_ratio * lr` at `total` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
