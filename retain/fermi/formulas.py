"""Bytes of each memory medium, as pure functions of an `Arch`.

- KV cache:   kv_layers x 2 (K and V) x n_kv_heads x head_dim x bytes, per token held in context.
- LoRA:       rank x (d_in + d_out) per targeted module per layer (A is r x d_in, B is d_out x r).
- Soft prompt: P virtual tokens x d_model (input embeddings).
- KV prefix:  P tokens x the KV cache's bytes per token (a trained KV cache, as in Cartridges).
- Full fine-tuning: every weight (a full copy, or a dense delta of the same size).
- Pretraining: params x bytes per param / pretraining tokens.

A weight-like memory of B bytes that holds what T session tokens taught costs B / T bytes per token; the KV
cache costs the same per token however many tokens there are. `tests/test_fermi.py` checks these formulas
against the tensors of a real model, cache and PEFT adapter.
"""

from __future__ import annotations

from retain.errors import RetainError
from retain.fermi.arch import Arch

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "attn": ATTN,
    "qv": ("q_proj", "v_proj"),
    "mlp": MLP,
    "all-linear": ATTN + MLP,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a storage dtype name (int4 is half a byte; scales and zero points not counted)."""
    if dtype not in DTYPE_BYTES:
        raise RetainError(f"unknown dtype '{dtype}'; choices: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def resolve_targets(targets: str) -> tuple[str, ...]:
    """A named target set (attn, qv, mlp, all-linear) or a comma list of module names."""
    if targets in LORA_TARGETS:
        return LORA_TARGETS[targets]
    modules = tuple(t.strip() for t in targets.split(",") if t.strip())
    bad = [m for m in modules if m not in ATTN + MLP]
    if bad or not modules:
        raise RetainError(
            f"unknown LoRA targets '{targets}'; use one of {', '.join(LORA_TARGETS)} "
            f"or a comma list of {', '.join(ATTN + MLP)}"
        )
    return modules


def kv_bytes_per_token(arch: Arch, dtype: str = "bf16") -> float:
    """KV-cache bytes per token in context: kv_layers (x passes) x 2 x n_kv_heads x head_dim x bytes."""
    return arch.cache_layers * 2 * arch.n_kv_heads * arch.head_dim * dtype_bytes(dtype)


def lora_params(arch: Arch, rank: int, targets: str = "all-linear") -> int:
    """LoRA parameters: rank x (d_in + d_out) for each targeted module in each layer that has it."""
    if rank <= 0:
        raise RetainError(f"LoRA rank must be positive, got {rank}")
    shapes = arch.linear_shapes()
    return sum(rank * (shapes[m][0] + shapes[m][1]) * shapes[m][2] for m in resolve_targets(targets))


def lora_bytes(arch: Arch, rank: int, targets: str = "all-linear", dtype: str = "bf16") -> float:
    return lora_params(arch, rank, targets) * dtype_bytes(dtype)


def soft_prompt_params(arch: Arch, prefix_tokens: int) -> int:
    """P trainable input embeddings of width d_model."""
    return prefix_tokens * arch.d_model


def kv_prefix_params(arch: Arch, prefix_tokens: int) -> int:
    """P trainable key and value vectors per KV layer and KV head (a trained KV cache)."""
    return prefix_tokens * arch.cache_layers * 2 * arch.n_kv_heads * arch.head_dim


def pretrain_bytes_per_token(arch: Arch, dtype: str = "bf16") -> float | None:
    """Weight bytes per pretraining token, or None when the token count is not published."""
    if not arch.pretrain_tokens:
        return None
    return arch.param_count() * dtype_bytes(dtype) / arch.pretrain_tokens
