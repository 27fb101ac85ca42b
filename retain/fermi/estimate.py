"""`retain fermi`: bytes per token of each memory medium for one architecture, with every assumption stated.

retain fermi --model llama-3-70b --tokens 100000 --rank 32 --targets all-linear --format json
retain fermi --model all                       # the table for every preset
retain fermi --config-json path/to/config.json --plot out/fermi
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from retain.errors import RetainError
from retain.fermi import formulas as F
from retain.fermi.arch import Arch, load_config_json
from retain.fermi.presets import PRESETS, get_preset

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]


@dataclass
class FermiConfig:
    """Options of `retain fermi`."""

    model: str = "llama-3-70b"
    """Architecture preset, or 'all' for one row per preset (see retain.fermi.presets)."""
    config_json: str | None = None
    """A Hugging Face config.json (or a directory holding one) to use instead of a preset."""
    tokens: int = 100_000
    """Session tokens the memory must hold; weight-like media divide their bytes by this."""
    rank: int = 32
    """LoRA rank."""
    targets: str = "all-linear"
    """LoRA target modules: attn (q,k,v,o), qv, mlp, all-linear (attn + MLP), or a comma list."""
    kv_dtype: Dtype = "bf16"
    """Storage dtype of the KV cache."""
    adapter_dtype: Dtype = "bf16"
    """Storage dtype of LoRA, soft-prompt and KV-prefix parameters."""
    weight_dtype: Dtype = "bf16"
    """Storage dtype of full weights (full fine-tuning, pretraining)."""
    prefix_tokens: int = 64
    """Virtual tokens P of a soft prompt or trained KV prefix."""
    kv_heads: int | None = None
    """Override the KV heads: 1 gives MQA, the number of query heads gives MHA."""
    kv_layers: int | None = None
    """MLKV: only this many layers own K/V, the others reuse them."""
    format: Literal["table", "json"] = "table"
    """Print a readable table or one JSON object."""
    plot: str | None = None
    """Directory to write the two figures into (bytes/token vs tokens, vs rank)."""
    plot_ranks: list[int] = field(default_factory=lambda: [8, 32, 128])
    """LoRA ranks drawn in the bytes-per-token vs tokens figure."""

    def __post_init__(self) -> None:
        for key in ("tokens", "rank", "prefix_tokens"):
            if getattr(self, key) <= 0:
                raise RetainError(f"--{key.replace('_', '-')} must be positive, got {getattr(self, key)}")
        F.resolve_targets(self.targets)


def resolve_arch(cfg: FermiConfig) -> Arch:
    """The architecture named by the config, with its MQA/MLKV overrides applied."""
    arch = load_config_json(cfg.config_json) if cfg.config_json else get_preset(cfg.model)
    return arch.with_changes(n_kv_heads=cfg.kv_heads, n_kv_layers=cfg.kv_layers)


def estimate(arch: Arch, cfg: FermiConfig) -> dict[str, Any]:
    """Every medium's params, bytes and bytes per token at `cfg.tokens`, and the assumptions behind them."""
    T = cfg.tokens
    kv_bpt = F.kv_bytes_per_token(arch, cfg.kv_dtype)
    lora_params = F.lora_params(arch, cfg.rank, cfg.targets)
    lora_bytes = lora_params * F.dtype_bytes(cfg.adapter_dtype)
    soft = F.soft_prompt_params(arch, cfg.prefix_tokens)
    prefix = F.kv_prefix_params(arch, cfg.prefix_tokens)
    params = arch.param_count()
    full_bytes = params * F.dtype_bytes(cfg.weight_dtype)
    return {
        "model": arch.name,
        "attention": arch.attention_kind,
        "params": params,
        "tokens": T,
        "kv_bytes_per_token": kv_bpt,
        "kv_cache_bytes": kv_bpt * T,
        "lora_rank": cfg.rank,
        "lora_targets": list(F.resolve_targets(cfg.targets)),
        "lora_params": lora_params,
        "lora_bytes": lora_bytes,
        "lora_bytes_per_token": lora_bytes / T,
        "kv_over_lora": kv_bpt / (lora_bytes / T),
        "soft_prompt_params": soft,
        "soft_prompt_bytes": soft * F.dtype_bytes(cfg.adapter_dtype),
        "soft_prompt_bytes_per_token": soft * F.dtype_bytes(cfg.adapter_dtype) / T,
        "kv_prefix_params": prefix,
        "kv_prefix_bytes": prefix * F.dtype_bytes(cfg.adapter_dtype),
        "kv_prefix_bytes_per_token": prefix * F.dtype_bytes(cfg.adapter_dtype) / T,
        "full_params": params,
        "full_bytes": full_bytes,
        "full_bytes_per_token": full_bytes / T,
        "pretrain_tokens": arch.pretrain_tokens,
        "pretrain_bytes_per_token": F.pretrain_bytes_per_token(arch, cfg.weight_dtype),
        "arch": asdict(arch),
        "assumptions": assumptions(arch, cfg),
    }


def assumptions(arch: Arch, cfg: FermiConfig) -> list[str]:
    """Plain sentences stating every choice behind the numbers."""
    modules = F.resolve_targets(cfg.targets)
    out = [
        f"KV cache in {cfg.kv_dtype} ({F.dtype_bytes(cfg.kv_dtype):g} B/element), {arch.attention_kind}: "
        f"{arch.kv_layers} layers x 2 (K,V) x {arch.n_kv_heads} KV heads x {arch.head_dim} head_dim; every "
        "cached layer keeps every token (no sliding window, no paging overhead).",
        f"LoRA rank {cfg.rank} on {cfg.targets} ({', '.join(modules)}) in every layer, stored in "
        f"{cfg.adapter_dtype}; embeddings and lm_head not adapted; bytes/token = adapter bytes / "
        f"{cfg.tokens:,} tokens.",
        f"Soft prompt: {cfg.prefix_tokens} virtual tokens x d_model {arch.d_model}; KV prefix: {cfg.prefix_tokens} "
        f"trained KV-cache tokens; both in {cfg.adapter_dtype}.",
        f"Full fine-tuning stores all {arch.param_count():,} weights in {cfg.weight_dtype} (a copy or a dense delta).",
        f"Embeddings {'tied (counted once)' if arch.tied_embeddings else 'untied (input and output counted)'}, "
        f"vocab {arch.vocab_size:,}" + ("; q/k/v biases counted." if arch.attention_bias else "."),
    ]
    if arch.pretrain_tokens:
        out.append(
            f"Pretraining: {arch.param_count():,} params x {F.dtype_bytes(cfg.weight_dtype):g} B / "
            f"{arch.pretrain_tokens:.3g} tokens ({arch.source})."
        )
    else:
        out.append(f"Pretraining tokens not published for {arch.name} ({arch.source}); no pretraining row.")
    if "int4" in (cfg.kv_dtype, cfg.adapter_dtype, cfg.weight_dtype):
        out.append("int4 counts half a byte per element; quantisation scales and zero points are not counted.")
    return out


def main(cfg: FermiConfig) -> None:
    """Print the estimate (table or JSON) and draw the figures when `--plot DIR` is given."""
    from retain.fermi.table import format_estimate, format_presets

    if cfg.plot and Path(cfg.plot).exists() and not Path(cfg.plot).is_dir():
        raise RetainError(f"--plot {cfg.plot} is a file; give a directory for the figures")
    if cfg.model == "all" and not cfg.config_json:
        rows = [estimate(a.with_changes(n_kv_heads=cfg.kv_heads, n_kv_layers=cfg.kv_layers), cfg)
                for a in PRESETS.values()]  # fmt: skip
        print(json.dumps(rows, indent=2) if cfg.format == "json" else format_presets(rows, cfg))
        arch = get_preset("llama-3-70b")
    else:
        arch = resolve_arch(cfg)
        est = estimate(arch, cfg)
        print(json.dumps(est, indent=2) if cfg.format == "json" else format_estimate(est, cfg))
    if cfg.plot:
        from retain.fermi.plots import plot_all

        paths = plot_all(arch, cfg, cfg.plot)
        if cfg.format != "json":
            print("\nplots: " + ", ".join(str(p) for p in paths))
