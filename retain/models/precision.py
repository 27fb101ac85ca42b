"""One place decides the precision a model computes in: bf16 autocast where the device computes bf16 in
hardware (a CUDA GPU with bf16; a CPU for which oneDNN has bf16 kernels, AVX-512 or AMX), fp32 elsewhere,
and fp32 everywhere when a run asks for it (`set_precision("fp32")`). Pretraining, memory writes, teacher
passes, evaluation and generation all compute under `autocast`; trained parameters stay fp32 (master weights).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch

Precision = Literal["auto", "fp32"]
_policy: dict[str, Precision] = {"precision": "auto"}


def set_precision(precision: Precision) -> None:
    """auto: bf16 autocast where the hardware computes bf16; fp32: never (exact, and ~3x slower on such a CPU)."""
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision must be auto or fp32, got {precision!r}")
    _policy["precision"] = precision


def precision() -> Precision:
    return _policy["precision"]


@functools.cache
def bf16_is_native(device: str) -> bool:
    """Whether bfloat16 matmuls run in hardware on `device`: a CUDA GPU with bf16, or a CPU for which oneDNN
    has bf16 kernels (AVX-512 or AMX). Elsewhere (an AVX2-only CPU) bf16 is emulated: a pretraining step of
    the tiny model takes 8.3 s under bf16 autocast against 0.6 s in fp32 (docs/log.md, 2026-12-01)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_bf16(device: str = "cpu") -> bool:
    """Whether `autocast(device)` computes in bf16."""
    return _policy["precision"] == "auto" and bf16_is_native(device)


def autocast(device: str = "cpu", enabled: bool = True) -> torch.autocast:
    """bfloat16 autocast on `device` when `enabled`, the run's precision allows it and the device has bf16
    hardware; fp32 otherwise."""
    device = torch.device(device).type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled and uses_bf16(device))


def device_of(model: torch.nn.Module) -> str:
    """The device type a model's parameters live on ("cpu", "cuda")."""
    return next(model.parameters()).device.type
