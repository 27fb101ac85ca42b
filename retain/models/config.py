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
    heads: int | None = None
    """Attention heads per layer, overriding the named size's (None: the size's own); must divide its width."""
    kv_heads: int | None = None
    """K/V heads per layer (GQA), overriding the named size's (None: the size's own); must divide `heads`."""
    width: int | None = None
    """Hidden width, overriding the named size's (None: the size's own); the MLP keeps 4x it. The dial for
    models far below `tiny`, e.g. to reach hundreds of tokens per parameter on a CPU (docs/overtrain.md)."""
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
    position: Literal["rope", "nope", "alibi"] = "rope"
    """How attention sees positions: rope (Llama), nope (not at all) or alibi (a causal distance bias). Any
    switch here away from its default builds the project's backbone (retain/models/backbone.py, the same
    module names) instead of Hugging Face's Llama."""
    kv_layers: int | None = None
    """MLKV: how many of the layers own K/V (the others reuse the nearest lower owner's); None: all."""
    loop: int = 1
    """Weight-shared depth: the stack of layers runs this many times."""
    first_layer_window: int | None = None
    """Local attention in the first layer: it sees only the last this many positions (None: all before it), so
    a value can be copied from afar only by a later layer, where the relation it stands in is already written
    at its position. At 16 and 2,500 steps reading formed on all four world seeds (open-book 0.99, both cities),
    with closed-book recall 0.87-0.97; at 8 world 1 formed reading too late (docs/world.md)."""
    window_heads: int | None = None
    """How many of the first layer's heads the window holds (the first ones; the others see all before them);
    None: every head. Needs `first_layer_window`."""

    def __post_init__(self) -> None:
        if self.width is not None and self.width < 1:
            raise ValueError(f"model.width must be at least 1, got {self.width}")
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"model.layers must be at least 1, got {self.layers}")
        if self.size in SIZES:
            d, _, heads, kv, _ = self.shape()
            if heads < 1 or d % heads or kv < 1 or heads % kv:
                raise ValueError(f"model.heads ({heads}) must divide the width ({d}) and model.kv_heads ({kv}) "
                                 "must divide model.heads")  # fmt: skip
            if self.window_heads is not None and self.window_heads > heads:
                raise ValueError(f"model.window_heads ({self.window_heads}) is more than the model's {heads} heads")
        if self.position not in ("rope", "nope", "alibi"):
            raise ValueError(f"model.position must be rope, nope or alibi, got {self.position!r}")
        n = self.shape()[1] if self.size in SIZES else self.layers
        if self.kv_layers is not None and n is not None and not 1 <= self.kv_layers <= n:
            raise ValueError(f"model.kv_layers must be between 1 and the model's {n} layers, got {self.kv_layers}")
        if self.loop < 1:
            raise ValueError(f"model.loop must be at least 1, got {self.loop}")
        if self.first_layer_window is not None and self.first_layer_window < 1:
            raise ValueError(f"model.first_layer_window must be at least 1, got {self.first_layer_window}")
        if self.window_heads is not None and not (self.first_layer_window and self.window_heads >= 1):
            raise ValueError(f"model.window_heads needs model.first_layer_window and must be at least 1, got "
                             f"{self.window_heads}")  # fmt: skip
        if self.path and self.switched:
            raise ValueError("model.position, kv_layers, loop and first_layer_window shape a model built here; a "
                             "model.path is "
                             "loaded as it is: remove one or the other")  # fmt: skip

    def shape(self) -> tuple[int, int, int, int, int]:
        """(width, layers, heads, kv_heads, MLP width) of the named size with this config's overrides."""
        d, layers, heads, kv_heads, ff = SIZES[self.size]
        if self.width:
            d, ff = self.width, 4 * self.width
        return d, self.layers or layers, self.heads or heads, self.kv_heads or kv_heads, ff

    @property
    def switched(self) -> bool:
        """Whether a backbone switch is away from Llama's (the backbone is built instead)."""
        return (self.position != "rope" or self.kv_layers is not None or self.loop != 1
                or self.first_layer_window is not None)  # fmt: skip
