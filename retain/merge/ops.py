"""Merging operations on tensors and on state dicts ({name: tensor}), torch only.

A task vector is delta = theta - theta_init. Every operation here works on one tensor at a time; the `*_dicts`
forms apply it key by key to state dicts that hold the same keys and shapes (`check_same_keys` says what
differs otherwise). For LoRA adapters the tensors are the products scale * B @ A (retain.merge.lora).

    ema(mu, theta, beta)                 mu <- (1 - beta) mu + beta theta
    lerp(a, b, t)                        (1 - t) a + t b
    task_arithmetic(deltas, weights)     sum_i w_i delta_i
    slerp(a, b, t)                       spherical interpolation, linear when a and b are nearly colinear
    slerp_many(deltas)                   WARP's SLERP of M task vectors: iterated, each with weight 1 / M
    liti(init, merged, eta)              init + eta (merged - init)
    ties(deltas, density)                trim, elect sign, disjoint mean (Yadav et al. 2023)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from retain.errors import RetainError

Tensors = dict[str, torch.Tensor]

DOT_THRESHOLD = 0.9995
"""|cos| above which SLERP falls back to linear interpolation (mergekit's constant): the angle is too small
for sin(omega) to be divided by safely, and the two paths coincide there anyway."""


def ema(mu: torch.Tensor, theta: torch.Tensor, beta: float) -> torch.Tensor:
    """One step of an exponential moving average: (1 - beta) mu + beta theta."""
    return (1.0 - beta) * mu + beta * theta


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation: a at t=0, b at t=1."""
    return (1.0 - t) * a + t * b


def task_arithmetic(deltas: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """A weighted sum of task vectors (Ilharco et al. 2023): add it to theta_init."""
    return sum(w * d for w, d in zip(weights, deltas, strict=True))  # type: ignore[return-value]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation of two tensors seen as flat vectors, on the unnormalised endpoints:
    sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b, with cos(omega) the cosine of a and b.
    Equal-norm endpoints stay on their sphere for every t (lerp cuts inside it). Nearly colinear or zero
    tensors are interpolated linearly."""
    af, bf = a.double().flatten(), b.double().flatten()
    na, nb = af.norm(), bf.norm()
    if na < eps or nb < eps:
        return lerp(a, b, t)
    dot = float(torch.dot(af / na, bf / nb).clamp(-1.0, 1.0))
    if abs(dot) > DOT_THRESHOLD:
        return lerp(a, b, t)
    omega = math.acos(dot)
    s = math.sin(omega)
    return (math.sin((1.0 - t) * omega) / s * af + math.sin(t * omega) / s * bf).view_as(a).to(a.dtype)


def slerp_many(deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """SLERP of M task vectors as WARP iterates it: m_1 = delta_1, m_k = slerp(m_{k-1}, delta_k, 1/k), so each
    input weighs 1/M in the limit of small angles (where it is the mean), and order matters a little."""
    if not deltas:
        raise ValueError("slerp_many needs at least one tensor")
    out = deltas[0]
    for k, d in enumerate(deltas[1:], start=2):
        out = slerp(out, d, 1.0 / k)
    return out


def liti(init: torch.Tensor, merged: torch.Tensor, eta: float) -> torch.Tensor:
    """Linear interpolation towards the initialisation (WARP's LiTI): init + eta (merged - init)."""
    return init + eta * (merged - init)


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of entries largest in magnitude (at least one), zero the rest."""
    k = max(1, math.ceil(density * delta.numel()))
    if k >= delta.numel():
        return delta.clone()
    flat = delta.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k).indices] = True
    return (flat * keep).view_as(delta)


def ties(deltas: Sequence[torch.Tensor], density: float = 0.2, weights: Sequence[float] | None = None) -> torch.Tensor:
    """TIES merging of task vectors (Yadav et al. 2023), per tensor:
    1. trim: keep each delta's top `density` entries by magnitude;
    2. elect: the sign of the weighted sum of the trimmed deltas, entry by entry;
    3. disjoint mean: average, with weights, only the entries that are non-zero and agree with that sign.
    An entry no delta keeps stays zero. Scale the result (lambda) by multiplying it."""
    weights = [1.0] * len(deltas) if weights is None else list(weights)
    if len(weights) != len(deltas):
        raise ValueError(f"ties: {len(deltas)} deltas but {len(weights)} weights")
    kept = torch.stack([w * trim(d, density) for w, d in zip(weights, deltas)])
    sign = torch.sign(kept.sum(0))
    agree = (torch.sign(kept) == sign) & (kept != 0)
    w = torch.tensor(weights, dtype=kept.dtype).view(-1, *[1] * (kept.dim() - 1)).expand_as(kept)
    total = (kept * agree).sum(0)
    mass = (w * agree).sum(0)
    return torch.where(mass != 0, total / mass.where(mass != 0, torch.ones_like(mass)), torch.zeros_like(total))


# --- state dicts --------------------------------------------------------------------------------------------


def check_same_keys(dicts: Sequence[Tensors], names: Sequence[str] | None = None) -> None:
    """Raise a one-line RetainError unless every state dict has the first one's keys and shapes."""
    names = list(names) if names else [f"input {i}" for i in range(len(dicts))]
    ref = dicts[0]
    for d, name in zip(dicts[1:], names[1:]):
        missing, extra = sorted(set(ref) - set(d)), sorted(set(d) - set(ref))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has an extra {extra[0]}"
            raise RetainError(f"{name} {what} ({len(missing)} missing, {len(extra)} extra keys vs {names[0]}); "
                              "merge only checkpoints of one architecture, or adapters of one target set")  # fmt: skip
        for k in ref:
            if d[k].shape != ref[k].shape:
                raise RetainError(f"{name}: {k} has shape {tuple(d[k].shape)}, {names[0]} has {tuple(ref[k].shape)}")


def per_key(fn: Callable[..., torch.Tensor], dicts: Sequence[Tensors], *args, **kw) -> Tensors:
    """{k: fn([d[k] for d in dicts], *args, **kw)} over the keys of the first dict (checked to match)."""
    check_same_keys(dicts)
    return {k: fn([d[k] for d in dicts], *args, **kw) for k in dicts[0]}


def task_vectors(thetas: Sequence[Tensors], init: Tensors) -> list[Tensors]:
    """delta_i = theta_i - init in fp32, key by key, over init's floating tensors (`apply` keeps the rest)."""
    check_same_keys([init, *thetas])
    return [{k: t[k].float() - v.float() for k, v in init.items() if v.is_floating_point()} for t in thetas]


def apply(init: Tensors, delta: Tensors, scale: float = 1.0) -> Tensors:
    """init + scale * delta, in init's dtypes; keys delta lacks (non-floating tensors) are init's."""
    return {k: (v.float() + scale * delta[k]).to(v.dtype) if k in delta else v for k, v in init.items()}


def ema_dicts(mu: Tensors, theta: Tensors, beta: float) -> Tensors:
    return per_key(lambda ts: ema(ts[0], ts[1], beta), [mu, theta])


def lerp_dicts(a: Tensors, b: Tensors, t: float) -> Tensors:
    return per_key(lambda ts: lerp(ts[0], ts[1], t), [a, b])


def slerp_dicts(a: Tensors, b: Tensors, t: float) -> Tensors:
    """SLERP layer by layer (tensor by tensor), as WARP and mergekit do."""
    return per_key(lambda ts: slerp(ts[0], ts[1], t), [a, b])


def slerp_many_dicts(deltas: Sequence[Tensors]) -> Tensors:
    return per_key(slerp_many, deltas)


def task_arithmetic_dicts(deltas: Sequence[Tensors], weights: Sequence[float]) -> Tensors:
    return per_key(task_arithmetic, deltas, weights)


def ties_dicts(deltas: Sequence[Tensors], density: float = 0.2, weights: Sequence[float] | None = None) -> Tensors:
    return per_key(ties, deltas, density, weights)


def liti_dicts(init: Tensors, merged: Tensors, eta: float) -> Tensors:
    return per_key(lambda ts: liti(ts[0], ts[1], eta), [init, merged])
