"""Model config (no torch import, so the CLI can describe it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Named sizes of the default Llama-style model: (d_model, n_layers, n_heads, n_kv_heads, d_ff).
# With the world's ~600-word vocabulary these come to about 1M, 6M and 25M parameters, all with GQA.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (128, 4, 4, 2, 512),
    "small": (256, 6, 4, 2, 1024),
    "base": (512, 8, 8, 2, 1536),
}


@dataclass
class ModelConfig:
    """Which base model: a named size of the default Llama (random init), or a local HF causal LM."""

    size: Literal["tiny", "small", "base"] = "small"
    """Named size of the default model: tiny (~1M params), small (~6M), base (~25M)."""
    layers: int | None = None
    """Number of transformer blocks, overriding the named size's (None: the size's own). Depth is the dial
    of reading speed here: two-layer Llamas learn in-context lookup in far fewer steps (docs/log.md)."""
    path: str | None = None
    """A local Hugging Face causal LM directory (weights + tokenizer) to use instead; nothing is downloaded."""
    max_seq_len: int = 2048
    """Longest sequence the model is built for (RoPE positions)."""
    rope_theta: float = 10000.0
    """RoPE base."""
    tie_embeddings: bool = True
    """Share the input embedding and the output head."""
    dropout: float = 0.0
    """Attention dropout during training."""

    def __post_init__(self) -> None:
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"model.layers must be at least 1, got {self.layers}")
