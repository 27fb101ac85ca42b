"""Reading and writing what `retain merge` merges: safetensors weight files, model directories (one file or
an index of shards, as `save_pretrained` writes them) and PEFT adapter directories (retain.merge.lora)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from retain.errors import RetainError
from retain.runs.files import atomic_write_bytes

Tensors = dict[str, torch.Tensor]


def read_safetensors(path: str | Path) -> Tensors:
    """Every tensor of a safetensors file; a missing or corrupt file is a one-line RetainError."""
    path = Path(path)
    if not path.is_file():
        raise RetainError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise RetainError(f"{path} is corrupt or not a safetensors file ({type(e).__name__}: {e})") from None


def write_safetensors(path: str | Path, tensors: Tensors) -> None:
    """Write tensors atomically (contiguous CPU copies), with the `format: pt` metadata transformers expects."""
    body = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(body, metadata={"format": "pt"}))


def read_model_dir(path: str | Path) -> Tensors:
    """The weights of a Hugging Face model directory: model.safetensors, or the shards its index lists."""
    from retain.models.build import check_causal_lm_dir

    path = check_causal_lm_dir(path)
    if (path / "model.safetensors").is_file():
        return read_safetensors(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        raise RetainError(f"{path} has no model.safetensors (nor an index of shards); retain reads safetensors only")
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError) as e:
        raise RetainError(f"{index} is not a safetensors index ({type(e).__name__}: {e})") from None
    out: Tensors = {}
    for shard in shards:
        out.update(read_safetensors(path / shard))
    return out


def write_model_dir(path: str | Path, template: str | Path, tensors: Tensors) -> None:
    """A model directory holding `tensors` as model.safetensors and every non-weight file of `template`
    (config, generation config, tokenizer), so it loads like the template."""
    path, template = Path(path), Path(template)
    path.mkdir(parents=True, exist_ok=True)
    for f in template.iterdir():
        if f.is_file() and not f.name.startswith("model") and f.suffix != ".safetensors":
            shutil.copy2(f, path / f.name)
    write_safetensors(path / "model.safetensors", tensors)
