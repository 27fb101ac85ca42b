"""Checkpoints in safetensors: everything needed to resume (model, optimizer, RNG states, loop state).

Tensors go into the safetensors body; everything else (step, optimizer scalars, loop state) into its JSON
metadata. Writes are atomic, and only the newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from retain.errors import RetainError
from retain.runs.files import atomic_write_bytes

_STEP = re.compile(r"step-(\d+)\.safetensors$")


def save_checkpoint(
    directory: str | Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write `directory/step-XXXXXXX.safetensors` atomically, then drop all but the newest `keep`.

    Tensors that share storage (tied embeddings) are stored once and restored as aliases.
    """
    directory = Path(directory)
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in tensors.items():
        t = t.detach()
        sig = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and sig in seen:
            aliases[name] = seen[sig]
            continue
        seen[sig] = name
        unique[name] = t.to("cpu").contiguous().clone()
    header = {"meta": json.dumps({"step": step, **meta}), "aliases": json.dumps(aliases)}
    path = atomic_write_bytes(directory / f"step-{step:07d}.safetensors", save(unique, metadata=header))
    for old in sorted(directory.glob("step-*.safetensors"))[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint with the highest step in `directory`, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP.search(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint back as (tensors, meta); a missing or corrupt file is a one-line RetainError."""
    path = Path(path)
    if not path.is_file():
        raise RetainError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("meta", "{}"))
        aliases = json.loads(header.get("aliases", "{}"))
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise RetainError(
            f"checkpoint {path} is corrupt or not a safetensors file ({type(e).__name__}: {e}); "
            "delete it to resume from the previous one"
        ) from None
    for name, target in aliases.items():
        tensors[name] = tensors[target]
    return tensors, meta


def pack_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state dict split into tensors (`optim.<param>.<key>`) and JSON-able metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of `pack_optimizer`, loaded into `optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def unpack_model(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's `model.`-prefixed tensors into `model` (strictly: every key, no other)."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})


def pack_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, NumPy and torch RNG states, so a resumed run draws the same numbers."""
    np_state = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": [np_state[0], *[x for x in np_state[2:]]]}
    return tensors, meta


def unpack_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `pack_rng`."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
