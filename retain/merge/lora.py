"""LoRA adapters as task vectors: the product scale * B @ A per adapted module, and back to A and B.

Merging A and B separately is not merging the updates (the sum of products is not the product of sums), so
every method here works on the products and re-factors the result by truncated SVD to a stated rank; the
relative Frobenius error of that truncation is reported per module. The state dicts are PEFT's own
(`get_peft_model_state_dict`, `adapter_model.safetensors`): keys `<module>.lora_A.weight` (r, in) and
`<module>.lora_B.weight` (out, r), with scale lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from retain.errors import RetainError
from retain.merge.io import read_safetensors, write_safetensors

Tensors = dict[str, torch.Tensor]
_A, _B = ".lora_A.weight", ".lora_B.weight"


def scale(config: dict[str, Any], r: int) -> float:
    """The factor PEFT multiplies B @ A by, for rank r under `config` (an adapter_config.json mapping)."""
    alpha = float(config.get("lora_alpha", 8))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def check_config(config: dict[str, Any], where: str) -> None:
    """Refuse adapters this module cannot merge faithfully, with what to do instead."""
    if config.get("peft_type", "LORA") != "LORA":
        raise RetainError(f"{where} is a {config.get('peft_type')} adapter; retain merge handles LoRA adapters")
    for key in ("use_dora", "alpha_pattern", "rank_pattern", "lora_bias", "modules_to_save"):
        if config.get(key):
            raise RetainError(f"{where}: {key} is set; retain merge supports plain LoRA (one rank and alpha, "
                              "no DoRA, bias or saved modules)")  # fmt: skip


def products(state: Tensors, config: dict[str, Any]) -> Tensors:
    """{module: scale * B @ A} in fp32 for every adapted module of a PEFT LoRA state dict."""
    out = {}
    for key, a in state.items():
        if not key.endswith(_A):
            continue
        module = key[: -len(_A)]
        b = state.get(module + _B)
        if b is None:
            raise RetainError(f"adapter state has {key} but no {module + _B}; the adapter file is incomplete")
        out[module] = scale(config, a.shape[0]) * (b.float() @ a.float())
    if not out:
        raise RetainError("adapter state holds no lora_A/lora_B weights; is it a LoRA adapter?")
    return out


def factor(deltas: Tensors, rank: int, config: dict[str, Any]) -> tuple[Tensors, dict[str, float]]:
    """A PEFT state dict of rank `rank` whose products approximate `deltas` (truncated SVD, the best rank-r
    approximation in Frobenius norm), and the relative error ||delta - approx|| / ||delta|| per module.
    The singular values are split evenly between A and B; B absorbs 1 / scale."""
    state, errors = {}, {}
    s_lora = scale(config, rank)
    for module, d in deltas.items():
        u, s, vh = torch.linalg.svd(d.float(), full_matrices=False)
        r = min(rank, s.numel())
        root = s[:r].sqrt()
        a, b = root[:, None] * vh[:r], u[:, :r] * root[None, :]
        if r < rank:  # pad to the stated rank so every module has the config's shape
            a = torch.cat([a, a.new_zeros(rank - r, a.shape[1])])
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - r)], dim=1)
        state[module + _A], state[module + _B] = a.contiguous(), (b / s_lora).contiguous()
        total = float(s.square().sum())
        errors[module] = math.sqrt(float(s[r:].square().sum()) / total) if total > 0 else 0.0
    return state, errors


def rank_of(state: Tensors) -> int:
    """The rank r of a PEFT LoRA state dict (the largest, if modules differ)."""
    return max(a.shape[0] for k, a in state.items() if k.endswith(_A))


# --- adapter directories (PEFT's save_pretrained layout) ---------------------------------------------------


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def read_adapter(path: str | Path) -> tuple[dict[str, Any], Tensors]:
    """(adapter_config.json, weights) of a PEFT LoRA adapter directory; bad input is a one-line RetainError."""
    path = Path(path)
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except FileNotFoundError:
        raise RetainError(f"{path} is not a PEFT adapter directory (no adapter_config.json)") from None
    except json.JSONDecodeError as e:
        raise RetainError(f"{path / 'adapter_config.json'} is not valid JSON: {e.msg}") from None
    check_config(config, str(path))
    return config, read_safetensors(path / "adapter_model.safetensors")


def write_adapter(path: str | Path, config: dict[str, Any], state: Tensors) -> None:
    """Save an adapter that `peft.PeftModel.from_pretrained` loads: config with r set from the weights."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {**config, "r": rank_of(state), "inference_mode": True}
    write_safetensors(path / "adapter_model.safetensors", state)
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
