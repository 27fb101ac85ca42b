"""One place decides where a model runs and in what precision.

Device: `auto` (this process's CUDA GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`.
Models are moved there when they are loaded or built; batches are built on the CPU and moved at the model
boundary (`to_model`). Nothing else in the project names a device.

Precision: bf16 autocast where the device computes bf16 in hardware (a CUDA GPU with bf16; a CPU for which
oneDNN has bf16 kernels, AVX-512 or AMX), fp32 elsewhere (`auto`); fp32 everywhere (`fp32`); or bf16 asked for
explicitly (`bf16`, refused where the device would emulate it). Pretraining, memory writes, teacher passes,
evaluation and generation all compute under `autocast`; trained parameters stay fp32 (master weights).
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch

from retain.errors import RetainError

Precision = Literal["auto", "fp32", "bf16"]
_policy: dict[str, str] = {"precision": "auto", "device": "cpu"}


def resolve_device(spec: str, key: str = "device") -> torch.device:
    """The torch device `spec` names on this machine; a one-line error naming `key` when it has no such device.
    `auto` and `cuda` mean this process's GPU: cuda:LOCAL_RANK under torchrun (one GPU per rank), else cuda:0."""
    spec = str(spec).strip().lower()
    mine = os.environ.get("LOCAL_RANK", "0")
    if spec == "auto":
        return torch.device(f"cuda:{mine}" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec[5:] or mine
        if not index.isdigit():
            raise RetainError(f"{key}: {spec!r} is not a device; use auto, cpu, cuda or cuda:N")
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise RetainError(f"{key}: {spec} asked for, but this machine has no CUDA GPU; set {key}: cpu or auto")
        if int(index) >= n:
            raise RetainError(f"{key}: {spec} asked for, but this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
        return torch.device(f"cuda:{index}")
    raise RetainError(f"{key}: {spec!r} is not a device; use auto, cpu, cuda or cuda:N")


def configure(device: str = "auto", precision: Precision = "auto") -> torch.device:
    """Set the run's device and precision (checked against the hardware, one-line errors); returns the device."""
    dev = resolve_device(device)
    if precision not in ("auto", "fp32", "bf16"):
        raise RetainError(f"precision: {precision!r} is not one of auto, fp32, bf16")
    if precision == "bf16" and not bf16_is_native(dev.type):
        raise RetainError(f"precision: bf16 asked for, but {dev} has no bf16 hardware (it would be emulated, "
                          "~14x slower); set precision: auto or fp32")  # fmt: skip
    _policy.update(device=str(dev), precision=precision)
    return dev


def set_precision(precision: Precision) -> None:
    """auto: bf16 autocast where the hardware computes bf16; fp32: never (exact, and ~3x slower on such a CPU)."""
    configure(_policy["device"], precision)


def precision() -> str:
    return _policy["precision"]


def device() -> torch.device:
    """The run's device (`configure`); the CPU until a run sets it."""
    return torch.device(_policy["device"])


@functools.cache
def bf16_is_native(device: str) -> bool:
    """Whether bfloat16 matmuls run in hardware on `device`: a CUDA GPU with bf16, or a CPU for which oneDNN
    has bf16 kernels (AVX-512 or AMX). Elsewhere (an AVX2-only CPU) bf16 is emulated: a pretraining step of
    the tiny model takes 8.3 s under bf16 autocast against 0.6 s in fp32 (docs/log.md, 2026-12-01)."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `autocast(device)` computes in bf16."""
    kind = torch.device(device).type
    return _policy["precision"] == "bf16" or (_policy["precision"] == "auto" and bf16_is_native(kind))


def autocast(device: str | torch.device = "cpu", enabled: bool = True) -> torch.autocast:
    """bfloat16 autocast on `device` when `enabled`, the run's precision allows it and the device has bf16
    hardware; fp32 otherwise."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled and uses_bf16(kind))


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device


def to_model(model: torch.nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`tensors` moved to the device of `model` (batches are built on the CPU)."""
    dev = device_of(model)
    return tuple(t.to(dev, non_blocking=True) for t in tensors)
