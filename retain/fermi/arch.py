"""A decoder-only transformer described by the numbers that decide its bytes, and where they come from.

An `Arch` comes from a preset (`retain.fermi.presets`), from a Hugging Face `config.json`, or from the
package's own model configs. Parameter counts follow the Llama family layout (q, k, v, o; gated MLP with
gate, up, down; RMSNorms), which also covers Mistral, Qwen2 and Gemma 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from retain.errors import RetainError


@dataclass(frozen=True)
class Arch:
    """Shape of a decoder-only transformer, enough to count its parameters and cache bytes."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    tied_embeddings: bool
    attention_bias: bool = False
    """q, k, v projections carry a bias (Qwen2)."""
    norms_per_layer: int = 2
    """RMSNorm weight vectors per layer (Gemma 2 has 4)."""
    n_kv_layers: int | None = None
    """MLKV: how many layers own K/V projections and cache entries; None means every layer."""
    passes: int = 1
    """Weight-shared passes through the stack (a looped model): parameters count once, each pass caches its
    own K/V."""
    pretrain_tokens: float | None = None
    """Published pretraining token count, or None when the authors did not publish it."""
    source: str = ""
    """Where the numbers come from (a model card, a paper, a config file)."""

    def __post_init__(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "vocab_size"):
            if getattr(self, key) <= 0:
                raise RetainError(f"architecture '{self.name}': {key} must be positive, got {getattr(self, key)}")
        if self.n_heads % self.n_kv_heads:
            raise RetainError(
                f"architecture '{self.name}': n_heads ({self.n_heads}) must be a multiple of "
                f"n_kv_heads ({self.n_kv_heads})"
            )
        if self.passes < 1:
            raise RetainError(f"architecture '{self.name}': passes must be at least 1, got {self.passes}")
        if self.n_kv_layers is not None and not 1 <= self.n_kv_layers <= self.n_layers:
            raise RetainError(
                f"architecture '{self.name}': n_kv_layers must be between 1 and n_layers ({self.n_layers}), "
                f"got {self.n_kv_layers}"
            )

    @property
    def kv_layers(self) -> int:
        """Layers that store K and V (all of them unless MLKV)."""
        return self.n_layers if self.n_kv_layers is None else self.n_kv_layers

    @property
    def cache_layers(self) -> int:
        """K/V entries per token in the cache: the layers that own K/V, once per pass."""
        return self.kv_layers * self.passes

    @property
    def attention_kind(self) -> str:
        """MHA, GQA or MQA by heads; MLKV when layers share their K/V."""
        kind = "MHA" if self.n_kv_heads == self.n_heads else "MQA" if self.n_kv_heads == 1 else "GQA"
        return f"MLKV ({self.kv_layers}/{self.n_layers} layers, {kind} heads)" if self.n_kv_layers else kind

    def linear_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Each linear module of a block as (d_in, d_out, how many layers have it), HF names."""
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        return {
            "q_proj": (self.d_model, q_out, self.n_layers),
            "k_proj": (self.d_model, kv_out, self.kv_layers),
            "v_proj": (self.d_model, kv_out, self.kv_layers),
            "o_proj": (q_out, self.d_model, self.n_layers),
            "gate_proj": (self.d_model, self.d_ff, self.n_layers),
            "up_proj": (self.d_model, self.d_ff, self.n_layers),
            "down_proj": (self.d_ff, self.d_model, self.n_layers),
        }

    def param_count(self) -> int:
        """All parameters, counting a tied embedding once."""
        linear = sum(i * o * n for i, o, n in self.linear_shapes().values())
        if self.attention_bias:
            linear += (
                self.n_layers * self.n_heads * self.head_dim + 2 * self.kv_layers * self.n_kv_heads * self.head_dim
            )
        norms = self.n_layers * self.norms_per_layer * self.d_model + self.d_model
        embeddings = self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)
        return linear + norms + embeddings

    def with_changes(self, **changes: Any) -> Arch:
        """A copy with some fields replaced (e.g. `n_kv_heads=1` for an MQA variant)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        suffix = ",".join(f"{k}={v}" for k, v in changes.items())
        return replace(self, name=f"{self.name}[{suffix}]", **changes)


# model_type values of decoder-only causal LMs whose config keys follow the Llama naming.
_CAUSAL_MODEL_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2",
    "granite", "starcoder2", "smollm3", "cohere", "internlm2", "deepseek", "stablelm", "yi", "exaone",
}  # fmt: skip
_NOT_CAUSAL_HINTS = ("ForMaskedLM", "ForSequenceClassification", "ForConditionalGeneration", "Encoder", "Model")


def from_hf_config(config: dict[str, Any], name: str = "hf-config", source: str = "") -> Arch:
    """An `Arch` from a Hugging Face config dict of a Llama-style causal LM.

    Raises:
        RetainError: when the dict is not a decoder-only causal-LM config or lacks a needed key.
    """
    archs = config.get("architectures") or []
    model_type = config.get("model_type", "")
    is_causal = any(a.endswith("ForCausalLM") for a in archs) or model_type in _CAUSAL_MODEL_TYPES
    if not is_causal:
        what = ", ".join(archs) or (f"model_type '{model_type}'" if model_type else "no 'architectures' entry")
        raise RetainError(
            f"{source or name} is not a causal-LM config ({what}); expected 'architectures' ending in "
            "'ForCausalLM' or a known decoder model_type such as llama, mistral, qwen2, gemma2"
        )
    cfg = config.get("text_config", config)  # multimodal wrappers keep the LM under text_config
    missing = [k for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size") if k not in cfg]
    if "intermediate_size" not in cfg:
        missing.append("intermediate_size")
    if missing:
        raise RetainError(f"{source or name} lacks config keys needed to count bytes: {', '.join(missing)}")
    heads = int(cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    return Arch(
        name=name,
        n_layers=int(cfg["num_hidden_layers"]),
        d_model=int(cfg["hidden_size"]),
        n_heads=heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        d_ff=int(cfg["intermediate_size"]),
        vocab_size=int(cfg["vocab_size"]),
        # transformers' own default for tie_word_embeddings is True when the key is absent
        tied_embeddings=bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", True))),
        attention_bias=bool(cfg.get("attention_bias", model_type == "qwen2")),
        norms_per_layer=4 if model_type.startswith("gemma2") or model_type.startswith("gemma3") else 2,
        n_kv_layers=cfg.get("n_kv_layers"),
        passes=int(cfg.get("loop") or 1),  # the project's backbone with weight-shared depth
        source=source or name,
    )


def load_config_json(path: str | Path) -> Arch:
    """An `Arch` from a `config.json` file (or a model directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise RetainError(f"config.json not found: {path}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RetainError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise RetainError(f"{path} must hold a JSON object, got {type(config).__name__}")
    name = path.parent.name if path.name == "config.json" else path.stem
    return from_hf_config(config, name=name or "hf-config", source=str(path))
