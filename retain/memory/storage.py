"""A weight medium as it is stored: at the end of every write its trained tensors are replaced by what they
read back as at the medium's storage `dtype`, so what is evaluated, replayed and trained further is what the
byte count pays for.

bf16, fp16 and fp8 are casts. int8 and int4 are symmetric absmax quantisation in blocks of `GROUP`
consecutive values of the memory laid out flat (every trained tensor in turn), each block with one bf16
scale, as llama.cpp's Q8_0 and Q4_0 do; the scales are counted in the bytes.
"""

from __future__ import annotations

import math

import torch

from retain.fermi.formulas import dtype_bytes

GROUP = 32
"""int8 / int4: values per block sharing one bf16 scale."""
CASTS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.float8_e4m3fn}
LEVELS = {"int8": 127, "int4": 7}


def stored_bytes(n: int, dtype: str) -> int:
    """Bytes of `n` values stored at `dtype`, block scales included."""
    scales = math.ceil(n / GROUP) * 2 if dtype in LEVELS else 0
    return math.ceil(n * dtype_bytes(dtype)) + scales


def roundtrip(x: torch.Tensor, dtype: str) -> torch.Tensor:
    """`x` (any shape) as it reads back after being stored at `dtype`, in x's own dtype."""
    dtype_bytes(dtype)  # an unknown dtype is a one-line error
    if dtype in CASTS:
        return x.to(CASTS[dtype]).to(x.dtype)
    flat = x.detach().float().flatten()
    pad = (-flat.numel()) % GROUP
    blocks = torch.cat([flat, flat.new_zeros(pad)]).view(-1, GROUP)
    scale = (blocks.abs().amax(dim=1, keepdim=True) / LEVELS[dtype]).to(torch.bfloat16).float()
    q = torch.where(scale > 0, blocks / scale.clamp_min(1e-30), torch.zeros_like(blocks)).round()
    out = (q.clamp(-LEVELS[dtype], LEVELS[dtype]) * scale).flatten()[: flat.numel()]
    return out.view_as(x).to(x.dtype)


@torch.no_grad()
def store(tensors: list[torch.Tensor], dtype: str) -> None:
    """Replace `tensors` in place by what they read back as, stored together at `dtype` (one flat blob)."""
    if dtype == "fp32" or not tensors:
        return
    flat = roundtrip(torch.cat([t.detach().float().flatten() for t in tensors]), dtype)
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))
