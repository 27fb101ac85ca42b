"""The research backbone: one readable decoder with the switches of the "removals" line of work.

    position: rope | nope | alibi     how (and whether) attention sees positions (NoPE: not at all)
    kv_heads: g                       GQA: g K/V heads shared by the query heads of a layer
    kv_layers: m                      MLKV: m of the L layers own K/V; the others reuse the nearest lower one's
    loop: k                           weight-shared depth: the L layers run k times
    mixer: attention | hyena          attention, or the attention-free Hyena operator (no KV cache)

With rope, m = L, k = 1 and attention it is the Llama decoder (the project's default base): its modules
carry Hugging Face Llama names (`model.layers.N.self_attn.q_proj` ... `mlp.down_proj`, `lm_head`), so a
Llama state dict loads into it as is, and PEFT targets the same names. MLKV follows the reference
(pythia-mlkv): owners at layers [0] + [floor((i + 1) L / m) for i < m - 1], and the K/V reused are pre-RoPE
(each layer rotates them for its own queries). Looping repeats the whole stack; each pass has its own
cache entries. Here the backbone is a plain module (`forward(ids) -> logits, cache`); training it through
`retain pretrain` and running the memory media on it (which use the Hugging Face cache interface) is the
next step (docs/backbone.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from retain.models.hyena import HyenaOperator

KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class BackboneConfig:
    """The decoder's shape and switches (tiny defaults, the project's `tiny` Llama)."""

    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    kv_heads: int | None = None
    """K/V heads per layer (GQA); None: one per query head."""
    kv_layers: int | None = None
    """MLKV: layers that own K/V (1..n_layers); None: every layer."""
    d_ff: int = 512
    position: Literal["rope", "nope", "alibi"] = "rope"
    rope_theta: float = 10000.0
    loop: int = 1
    """Passes through the weight-shared stack of layers."""
    mixer: Literal["attention", "hyena"] = "attention"
    hyena_order: int = 2
    max_seq_len: int = 1024
    """Longest sequence (the Hyena filter is defined over this many positions)."""
    rms_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.position not in ("rope", "nope", "alibi"):
            raise ValueError(f"position must be rope, nope or alibi, got {self.position!r}")
        if self.mixer not in ("attention", "hyena"):
            raise ValueError(f"mixer must be attention or hyena, got {self.mixer!r}")
        if self.kv_layers is not None and not 1 <= self.kv_layers <= self.n_layers:
            raise ValueError(f"kv_layers must be between 1 and n_layers ({self.n_layers}), got {self.kv_layers}")
        if self.d_model % self.n_heads or self.n_heads % self.heads_kv:
            raise ValueError(f"d_model ({self.d_model}) must split into n_heads ({self.n_heads}), and n_heads "
                             f"into kv_heads ({self.heads_kv})")  # fmt: skip
        if self.loop < 1:
            raise ValueError(f"loop must be at least 1, got {self.loop}")
        if self.mixer == "hyena" and self.hyena_order < 2:
            raise ValueError(f"hyena_order must be >= 2 (N gates, N - 1 long filters), got {self.hyena_order}")
        if self.mixer == "hyena" and (self.kv_layers is not None or self.position != "rope"):
            raise ValueError("mixer hyena has no attention: leave kv_layers and position at their defaults")

    @property
    def heads_kv(self) -> int:
        return self.kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def owners(self) -> list[int]:
        """The layers that own K/V (MLKV), as the reference places them."""
        L, m = self.n_layers, self.kv_layers or self.n_layers
        return [0] + [(i + 1) * L // m for i in range(m - 1)]


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding of (B, H, T, D) as Llama applies it (halves rotated, not pairs)."""
    T, D = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    angles = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), inv)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return (x * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)


def alibi(n_heads: int, T: int, device) -> torch.Tensor:
    """ALiBi's causal additive bias (H, T, T): -slope_h (i - j) for j <= i, -inf above; slopes 2^(-8h/H)."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, device=device) / n_heads)
    i, j = torch.arange(T, device=device)[:, None], torch.arange(T, device=device)[None]
    bias = -slopes[:, None, None] * (i - j).float()
    return bias.masked_fill(j > i, float("-inf"))


class Attention(nn.Module):
    def __init__(self, cfg: BackboneConfig, owns_kv: bool):
        super().__init__()
        self.cfg, self.owns_kv = cfg, owns_kv
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        if owns_kv:
            self.k_proj = nn.Linear(cfg.d_model, cfg.heads_kv * cfg.head_dim, bias=False)
            self.v_proj = nn.Linear(cfg.d_model, cfg.heads_kv * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None):
        """Returns the output and the (pre-RoPE) K/V this layer used: its own, or the owner's `kv`."""
        cfg, (B, T, _) = self.cfg, x.shape
        q = self.q_proj(x).view(B, T, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        if self.owns_kv:
            k = self.k_proj(x).view(B, T, cfg.heads_kv, cfg.head_dim).transpose(1, 2)
            kv = (k, self.v_proj(x).view(B, T, cfg.heads_kv, cfg.head_dim).transpose(1, 2))
        k, v = kv
        if cfg.position == "rope":
            q, k = rope(q, cfg.rope_theta), rope(k, cfg.rope_theta)
        rep = cfg.n_heads // cfg.heads_kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        if cfg.position == "alibi":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=alibi(cfg.n_heads, T, x.device).to(q.dtype))
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1)), kv


class MLP(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig, owns_kv: bool):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        if cfg.mixer == "hyena":
            self.mixer = HyenaOperator(cfg.d_model, cfg.max_seq_len, order=cfg.hyena_order)
        else:
            self.self_attn = Attention(cfg, owns_kv)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, kv):
        h = self.input_layernorm(x)
        if hasattr(self, "mixer"):
            out, kv = self.mixer(h), None
        else:
            out, kv = self.self_attn(h, kv)
        x = x + out
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Decoder(nn.Module):
    """Embeddings, the stack of layers and the final norm (Llama's `model`)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        owners = set(cfg.owners())
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i in owners) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)


class Backbone(nn.Module):
    """The decoder with its LM head: `forward(ids)` gives logits (B, T, V) and the KV cache it made (one (K, V)
    per layer that owns K/V, per pass; empty with the Hyena mixer)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, KV]:
        if ids.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_seq_len={self.cfg.max_seq_len}")
        x, cache = self.model.embed_tokens(ids), []
        for _ in range(self.cfg.loop):
            kv = None
            for layer in self.model.layers:
                owns = getattr(getattr(layer, "self_attn", None), "owns_kv", False)
                x, kv = layer(x, None if owns else kv)
                if owns:
                    cache.append(kv)
        return self.lm_head(self.model.norm(x)), cache


def cache_bytes(cache: KV) -> int:
    """Bytes of the K/V tensors a forward kept."""
    return sum(t.numel() * t.element_size() for kv in cache for t in kv)


def arch(cfg: BackboneConfig):
    """The backbone as the Fermi calculator's `Arch`, for its KV cache bytes: MLKV layers, GQA heads, and a
    looped stack unrolled (each pass caches its own K/V; its parameter count would count shared weights k times)."""
    from retain.fermi.arch import Arch

    kv_layers = (cfg.kv_layers or cfg.n_layers) * cfg.loop
    return Arch(name="backbone", n_layers=cfg.n_layers * cfg.loop, d_model=cfg.d_model, n_heads=cfg.n_heads,
                n_kv_heads=cfg.heads_kv, head_dim=cfg.head_dim, d_ff=cfg.d_ff, vocab_size=cfg.vocab_size,
                tied_embeddings=False, n_kv_layers=kv_layers)  # fmt: skip


def init_weights(model: Backbone, seed: int = 0) -> Backbone:
    """Normal(0, 0.02) weights, unit norms (Llama's initialisation), drawn on the CPU from `seed`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "mixer" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model
