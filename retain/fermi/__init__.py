"""Byte accounting per token for each memory medium (`retain fermi`). Pure functions of an architecture."""

from retain.fermi.arch import Arch, from_hf_config, load_config_json
from retain.fermi.estimate import FermiConfig, estimate
from retain.fermi.formulas import (
    kv_bytes_per_token,
    kv_prefix_params,
    lora_bytes,
    lora_params,
    pretrain_bytes_per_token,
    soft_prompt_params,
)
from retain.fermi.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "Arch",
    "FermiConfig",
    "estimate",
    "from_hf_config",
    "get_preset",
    "kv_bytes_per_token",
    "kv_prefix_params",
    "load_config_json",
    "lora_bytes",
    "lora_params",
    "pretrain_bytes_per_token",
    "soft_prompt_params",
]
