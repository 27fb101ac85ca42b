"""Seeding. Library code takes explicit `seed`/`rng` arguments; this is for the top of a run."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels (slower)."""
    import torch  # here, so that `derive_seed` (the world's generator uses it) imports no torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from several parts (run seed, step, example), independent of PYTHONHASHSEED."""
    h = 1469598103934665603
    for part in parts:
        for byte in str(part).encode() + b"\x00":
            h = ((h ^ byte) * 1099511628211) % 2**64
    return h % 2**63
