"""The theory of catastrophic overtraining in its smallest form (Springer et al. 2025, section 4): a two-layer
linear network f(x) = W2 W1 x trained by gradient descent from a small initialisation learns the singular
values of its target one after another, largest first. Pretrained on A for t steps, then fine-tuned on a
misaligned B for a fixed number of steps, how much of A does it keep, as a function of t?

The toy's sizes and spectra are not given by the paper; the ones chosen here are in `LinearConfig`. A and B
share their first `shared` singular directions and values; in the others B keeps A's input directions and
singular values but turns each output direction by `angle` (so B's own modes are misaligned with A's). A
mode of A not yet learned when fine-tuning starts barely moves in `ft_steps` (its factors are still small);
one already learned turns towards B fast, and A's loss on it is then larger than if it had never been
learned: the longer the pretraining, the more such modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class LinearConfig:
    """The two-layer linear network of the theory, its two tasks and the pretraining times tried."""

    dim: int = 8
    """Input, hidden and output width."""
    s_max: float = 1.0
    """A's largest singular value."""
    s_min: float = 0.05
    """A's smallest; the others geometric in between (smaller ones are learned later)."""
    shared: int = 3
    """Leading modes B shares with A exactly."""
    angle: float = 1.2
    """Radians each of B's other output directions is turned from A's."""
    init: float = 1e-3
    """Scale of the initial weights (small: the incremental, saddle-to-saddle regime)."""
    lr: float = 0.1
    """Gradient-descent step size, pretraining and fine-tuning."""
    ft_steps: int = 100
    """Fine-tuning steps on B after each pretraining time."""
    times: list[int] = field(default_factory=lambda: [round(10 ** (1 + 0.25 * i)) for i in range(15)])
    """Pretraining steps after which a copy is fine-tuned (10 ... 10^4.5)."""
    seed: int = 0
    """Seed of the tasks' singular vectors and of the initial weights."""

    def __post_init__(self) -> None:
        if self.dim < 2 or not 0 <= self.shared < self.dim:
            raise ValueError(f"linear: need dim >= 2 and 0 <= shared < dim, got dim {self.dim}, shared {self.shared}")
        if not 0 < self.s_min <= self.s_max or self.init <= 0 or self.lr <= 0 or self.ft_steps < 1:
            raise ValueError("linear: need 0 < s_min <= s_max, and init, lr and ft_steps positive")
        if not self.times or any(t < 1 for t in self.times):
            raise ValueError(f"linear: times must be positive step counts, got {self.times}")


def tasks(cfg: LinearConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A = U S V^T and B (A's first `shared` modes; the others' output directions turned by `angle`)."""
    g = torch.Generator().manual_seed(cfg.seed)
    u, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64))
    s = torch.logspace(math.log10(cfg.s_max), math.log10(cfg.s_min), cfg.dim, dtype=torch.float64)
    turned = u.clone()
    for i in range(cfg.shared, cfg.dim):  # turn u_i towards the next direction round the unshared block
        j = cfg.shared + (i - cfg.shared + 1) % (cfg.dim - cfg.shared)
        turned[:, i] = math.cos(cfg.angle) * u[:, i] + math.sin(cfg.angle) * u[:, j]
    turned, _ = torch.linalg.qr(turned)  # still orthonormal; the shared columns are unchanged up to sign
    turned[:, : cfg.shared] = u[:, : cfg.shared]
    return u @ torch.diag(s) @ v.T, turned @ torch.diag(s) @ v.T


def loss(w1: torch.Tensor, w2: torch.Tensor, target: torch.Tensor) -> float:
    """Half the squared error of W2 W1 against the target map (whitened inputs)."""
    return 0.5 * float(((w2 @ w1 - target) ** 2).sum())


def step(w1: torch.Tensor, w2: torch.Tensor, target: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-descent step on `loss`."""
    r = w2 @ w1 - target
    return w1 - lr * w2.T @ r, w2 - lr * r @ w1.T


def sweep(cfg: LinearConfig) -> list[dict[str, float]]:
    """For each pretraining time t: A's loss before and after fine-tuning on B, B's loss after, and the
    weights' norm. One pretraining trajectory; a copy is fine-tuned at each t."""
    a, b = tasks(cfg)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    w1 = cfg.init * torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64)
    w2 = cfg.init * torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64)
    rows, done = [], 0
    for t in sorted(set(cfg.times)):
        for _ in range(t - done):
            w1, w2 = step(w1, w2, a, cfg.lr)
        done = t
        f1, f2 = w1, w2
        for _ in range(cfg.ft_steps):
            f1, f2 = step(f1, f2, b, cfg.lr)
        rows.append({"t": t, "pretrain_loss": loss(w1, w2, a), "pretrain_loss_after_ft": loss(f1, f2, a),
                     "ft_loss": loss(f1, f2, b), "norm": float((w2 @ w1).norm())})  # fmt: skip
    return rows


def inflection(rows: list[dict[str, float]]) -> int | None:
    """The pretraining time after which A's loss after fine-tuning is lowest, when it rises again later
    (None when it only falls)."""
    i = min(range(len(rows)), key=lambda k: rows[k]["pretrain_loss_after_ft"])
    return (
        rows[i]["t"]
        if i < len(rows) - 1 and rows[-1]["pretrain_loss_after_ft"] > rows[i]["pretrain_loss_after_ft"]
        else None
    )
