"""The research backbone: one readable decoder with the switches of the "removals" line of work.

    position: rope | nope | alibi     how (and whether) attention sees positions (NoPE: not at all)
    kv_heads: g                       GQA: g K/V heads shared by the query heads of a layer
    kv_layers: m                      MLKV: m of the L layers own K/V; the others reuse the nearest lower one's
    loop: k                           weight-shared depth: the L layers run k times
    mixer: attention | hyena          attention, or the attention-free Hyena operator (no KV cache)

With rope, m = L, k = 1 and attention it is the Llama decoder (the project's default base): its modules
carry Hugging Face Llama names (`model.layers.N.self_attn.q_proj` ... `mlp.down_proj`, `lm_head`), so a
Llama state dict loads into it as is, and PEFT targets the same names. MLKV follows the reference
(pythia-mlkv): owners at layers [0] + [floor((i + 1) L / m) for i < m - 1]; the others reuse the nearest
lower owner's K/V. The reference shares them before RoPE and rotates them in each layer; every layer rotates
by the same positions, so sharing them rotated is the same and lets the cache hold them as Hugging Face's
does. Looping repeats the whole stack; each pass has its own cache entries.

Two faces: `Backbone` is the plain module (`forward(ids) -> logits, cache`) the tests and the grokking study
use; `BackboneForCausalLM` is the same decoder as a Hugging Face `PreTrainedModel` (registered in-process as
model type `retain_backbone`, no remote code), so `retain pretrain` trains it and every memory medium, the
evaluation and generation run on it through the Hugging Face cache interface (docs/backbone.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from retain.models.hyena import HyenaOperator

KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Step:
    """What every layer of one forward shares: the queries' positions (B, T) for RoPE (None: 0..T-1), which keys
    each query may see (B, 1, T, S) (None: causal over the T tokens alone), and a Hugging Face cache whose slot
    i holds the i-th K/V owner of the forward (each pass its own)."""

    positions: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    cache: Any = None
    attentions: list[torch.Tensor] | None = None
    """When a list, each attention layer appends its weights (B, H, T, S) to it (`output_attentions`)."""
    hidden: list[torch.Tensor] | None = None
    """When a list, the decoder appends its input and each layer's output to it (`output_hidden_states`)."""


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
    first_layer_window: int | None = None
    """The first layer attends only to the last this many positions (itself included); None: all before it."""
    window_heads: int | None = None
    """How many of the first layer's heads (the first ones) the window holds; None: all of them."""
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
        if self.first_layer_window is not None and self.first_layer_window < 1:
            raise ValueError(f"first_layer_window must be at least 1, got {self.first_layer_window}")
        if self.window_heads is not None and not (self.first_layer_window and 1 <= self.window_heads <= self.n_heads):
            raise ValueError(f"window_heads must be between 1 and n_heads ({self.n_heads}) and needs a "
                             f"first_layer_window, got {self.window_heads}")  # fmt: skip
        if self.mixer == "hyena" and self.hyena_order < 2:
            raise ValueError(f"hyena_order must be >= 2 (N gates, N - 1 long filters), got {self.hyena_order}")
        if self.mixer == "hyena" and (self.kv_layers is not None or self.position != "rope" or self.first_layer_window):
            raise ValueError("mixer hyena has no attention: leave kv_layers, position and first_layer_window at "
                             "their defaults")  # fmt: skip

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


def rope(x: torch.Tensor, theta: float, positions: torch.Tensor | None = None,
         dtype: torch.dtype | None = None) -> torch.Tensor:  # fmt: skip
    """Rotary position embedding of (B, H, T, D) as Llama applies it (halves rotated, not pairs), at `positions`
    (B, T) or 0..T-1, with the angles' cos and sin in `dtype` (Llama's: the residual stream's). Under bf16
    autocast that keeps the rotated q and k in fp32, as Llama does: cast back to bf16 here, the gradients of
    the K/V heads a GQA group shares were summed in bf16, not fp32, and training drifted from Llama's."""
    T, D = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    pos = torch.arange(T, device=x.device)[None] if positions is None else positions
    angles = (pos.float()[..., None] * inv)[:, None]  # (B or 1, 1, T, D/2)
    emb = torch.cat([angles, angles], -1)
    cos, sin = emb.cos().to(dtype or x.dtype), emb.sin().to(dtype or x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def alibi(n_heads: int, T: int, device, S: int | None = None) -> torch.Tensor:
    """ALiBi's causal additive bias (H, T, S) for the last T of S positions: -slope_h (i - j) for j <= i, -inf
    above; slopes 2^(-8h/H)."""
    S = S or T
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, device=device) / n_heads)
    i, j = torch.arange(S - T, S, device=device)[:, None], torch.arange(S, device=device)[None]
    bias = -slopes[:, None, None] * (i - j).float()
    return bias.masked_fill(j > i, float("-inf"))


class Attention(nn.Module):
    def __init__(self, cfg: BackboneConfig, owns_kv: bool, window: int | None = None):
        super().__init__()
        self.cfg, self.owns_kv, self.window = cfg, owns_kv, window
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        if owns_kv:
            self.k_proj = nn.Linear(cfg.d_model, cfg.heads_kv * cfg.head_dim, bias=False)
            self.v_proj = nn.Linear(cfg.d_model, cfg.heads_kv * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None, step: Step | None = None,
                slot: int = 0):  # fmt: skip
        """Returns the output and the K/V (rotated) this layer used: its own (with the cache's past, in cache
        slot `slot`), or the owner's `kv`."""
        cfg, (B, T, _), step = self.cfg, x.shape, step or Step()
        q = self.q_proj(x).view(B, T, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        if self.owns_kv:
            k = self.k_proj(x).view(B, T, cfg.heads_kv, cfg.head_dim).transpose(1, 2)
            k = rope(k, cfg.rope_theta, step.positions, x.dtype) if cfg.position == "rope" else k
            v = self.v_proj(x).view(B, T, cfg.heads_kv, cfg.head_dim).transpose(1, 2)
            kv = step.cache.update(k, v, slot) if step.cache is not None else (k, v)
        k, v = kv
        if cfg.position == "rope":
            q = rope(q, cfg.rope_theta, step.positions, x.dtype)
        rep = cfg.n_heads // cfg.heads_kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        mask = step.mask
        if self.window:  # local attention: keys at most window - 1 positions back (queries are the last T of S)
            S = k.shape[2]
            q_at, k_at = torch.arange(S - T, S, device=x.device)[:, None], torch.arange(S, device=x.device)[None]
            near = (k_at <= q_at) & (q_at - k_at < self.window)
            if cfg.window_heads is not None:  # the window holds the first window_heads heads; the rest see all
                windowed = torch.arange(cfg.n_heads, device=x.device)[:, None, None] < cfg.window_heads
                near = torch.where(windowed, near, k_at <= q_at)
            near = near.view(1, -1, T, S)  # (1, 1 or n_heads, T, S)
            mask = near if mask is None else mask & near
        if cfg.position == "alibi":
            bias = alibi(cfg.n_heads, T, x.device, k.shape[2]).to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        if step.attentions is not None:  # the weights themselves, as Llama's eager attention gives them
            S = k.shape[2]
            see = mask if mask is not None else torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
            scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.head_dim)
            scores = scores + see if see.dtype != torch.bool else scores.masked_fill(~see, float("-inf"))
            step.attentions.append(scores.softmax(-1))
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
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
    def __init__(self, cfg: BackboneConfig, owns_kv: bool, window: int | None = None):
        super().__init__()
        if cfg.mixer == "hyena":
            self.mixer = HyenaOperator(cfg.d_model, cfg.max_seq_len, order=cfg.hyena_order)
        else:
            self.self_attn = Attention(cfg, owns_kv, window)
        self.mlp = MLP(cfg)
        # registered in Llama's order, so optimizers and gradient clipping sum over the parameters as for Llama
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)

    def forward(self, x: torch.Tensor, kv, step: Step | None = None, slot: int = 0):
        h = self.input_layernorm(x)
        if hasattr(self, "mixer"):
            out, kv = self.mixer(h), None
        else:
            out, kv = self.self_attn(h, kv, step, slot)
        x = x + out
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Decoder(nn.Module):
    """Embeddings, the stack of layers and the final norm (Llama's `model`)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg, owners = cfg, set(cfg.owners())
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i in owners, cfg.first_layer_window if i == 0 else None)
                                    for i in range(cfg.n_layers))  # fmt: skip
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)

    def forward(self, x: torch.Tensor, step: Step | None = None) -> tuple[torch.Tensor, KV]:
        """The normed hidden states of embeddings `x` and the K/V of each owner layer, pass after pass (cache
        slots in that order)."""
        cache: KV = []
        for _ in range(self.cfg.loop):
            kv = None
            for layer in self.layers:
                if step is not None and step.hidden is not None:
                    step.hidden.append(x)
                owns = getattr(getattr(layer, "self_attn", None), "owns_kv", False)
                x, kv = layer(x, None if owns else kv, step, len(cache))
                if owns:
                    cache.append(kv)
        x = self.norm(x)
        if step is not None and step.hidden is not None:
            step.hidden.append(x)  # the last one normed, as Hugging Face's
        return x, cache


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
        h, cache = self.model(self.model.embed_tokens(ids))
        return self.lm_head(h), cache


def cache_bytes(cache: KV) -> int:
    """Bytes of the K/V tensors a forward kept."""
    return sum(t.numel() * t.element_size() for kv in cache for t in kv)


def arch(cfg: BackboneConfig):
    """The backbone as the Fermi calculator's `Arch`: MLKV layers, GQA heads, and a looped stack's passes
    (each caches its own K/V; the shared weights count once)."""
    from retain.fermi.arch import Arch

    return Arch(name="backbone", n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                n_kv_heads=cfg.heads_kv, head_dim=cfg.head_dim, d_ff=cfg.d_ff, vocab_size=cfg.vocab_size,
                tied_embeddings=False, n_kv_layers=cfg.kv_layers, passes=cfg.loop)  # fmt: skip


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


class BackboneLMConfig(PreTrainedConfig):
    """The backbone as a Hugging Face config: Llama's keys (so the Fermi calculator, PEFT and the memory media
    read it as they read any Llama) and the switches."""

    model_type = "retain_backbone"
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    position: str = "rope"
    kv_layers: int | None = None
    n_kv_layers: int | None = None
    loop: int = 1
    first_layer_window: int | None = None
    window_heads: int | None = None
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self, **kwargs):
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        self.backbone()  # the switches checked, one line each
        self.n_kv_layers = self.kv_layers  # the Fermi calculator's MLKV key
        super().__post_init__(**kwargs)
        self.architectures = self.architectures or ["BackboneForCausalLM"]

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(vocab_size=self.vocab_size, d_model=self.hidden_size, n_layers=self.num_hidden_layers,
                              n_heads=self.num_attention_heads, kv_heads=self.num_key_value_heads,
                              kv_layers=self.kv_layers, d_ff=self.intermediate_size, position=self.position,
                              rope_theta=self.rope_theta, loop=self.loop, first_layer_window=self.first_layer_window,
                              window_heads=self.window_heads, max_seq_len=self.max_position_embeddings,
                              rms_eps=self.rms_norm_eps)  # fmt: skip


def visible(attention_mask: torch.Tensor | None, positions: torch.Tensor, T: int, past: int) -> torch.Tensor | None:
    """(B, 1, T, S) True where each of the T queries may see a key of the S = past + T: causal, not padding
    (`attention_mask`, B x S), and within its own document when a packed batch restarts its positions (no
    mask, no past: as transformers reads packed rows). None when that is plain causal attention. A query
    always sees itself, so a padded row is never empty (softmax over nothing would be NaN)."""
    B, S, device = positions.shape[0], past + T, positions.device
    packed = attention_mask is None and past == 0 and T > 1 and bool((positions[:, 1:] == 0).any())
    if attention_mask is None and past == 0 and not packed:
        return None
    q, k = torch.arange(past, S, device=device)[:, None], torch.arange(S, device=device)[None]
    see = (k <= q)[None, None].expand(B, 1, T, S)
    if attention_mask is not None:
        see = see & attention_mask[:, None, None, :S].bool()
    if packed:
        doc = (positions == 0).cumsum(-1)
        see = see & (doc[:, None, :, None] == doc[:, None, None, :])
    return see | (k == q)[None, None]


class BackboneForCausalLM(PreTrainedModel):
    """The backbone as a Hugging Face causal LM: the same `Decoder` (Llama's module names) with the standard
    forward (`input_ids` or `inputs_embeds`, `attention_mask`, `position_ids`, `cache`, `labels`,
    `logits_to_keep`), so pretraining, generation, PEFT and every memory medium run on it. The Hyena mixer is
    not offered here: packed pretraining would convolve across documents and it keeps no cache to decode
    with (it runs in the plain `Backbone`)."""

    config_class = BackboneLMConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: BackboneLMConfig):
        super().__init__(config)
        self.cfg = config.backbone()
        self.model = Decoder(self.cfg)
        self.lm_head = nn.Linear(self.cfg.d_model, self.cfg.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    @property
    def slots(self) -> int:
        """Cache layers: one per K/V owner per pass."""
        return len(self.cfg.owners()) * self.cfg.loop

    def fit(self, cache) -> None:
        """A cache made for `num_hidden_layers` layers (as `DynamicCache(config=...)` makes one) holds one per
        K/V owner per pass instead: empty layers beyond that are dropped, missing ones added."""
        if any(layer.is_initialized for layer in cache.layers[self.slots :]):
            raise ValueError(f"a cache of {len(cache.layers)} filled layers given to a backbone with {self.slots}")
        del cache.layers[self.slots :]
        cache.layers.extend(DynamicLayer() for _ in range(self.slots - len(cache.layers)))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache=None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None, logits_to_keep: int = 0,
                num_items_in_batch: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, **_: Any) -> CausalLMOutputWithPast:  # fmt: skip
        x = inputs_embeds if inputs_embeds is not None else self.model.embed_tokens(input_ids)
        B, T = x.shape[:2]
        if use_cache and cache is None:
            cache = DynamicCache()
        if cache is not None:
            self.fit(cache)
        past = cache.get_seq_length() if cache is not None else 0
        if past + T > self.cfg.max_seq_len:
            raise ValueError(f"{past + T} positions exceed max_position_embeddings={self.cfg.max_seq_len}")
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=x.device)[None].expand(B, -1)
        step = Step(position_ids, visible(attention_mask, position_ids, T, past), cache,
                    [] if output_attentions else None, [] if output_hidden_states else None)  # fmt: skip
        h, _ = self.model(x, step)
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        loss = None
        if labels is not None:
            pred, gold = logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device)
            if num_items_in_batch is None:
                loss = F.cross_entropy(pred, gold, ignore_index=-100)
            else:
                loss = F.cross_entropy(pred, gold, ignore_index=-100, reduction="sum") / num_items_in_batch
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None,
                                      attentions=tuple(step.attentions) if output_attentions else None,
                                      hidden_states=tuple(step.hidden) if output_hidden_states else None)  # fmt: skip


AutoConfig.register(BackboneLMConfig.model_type, BackboneLMConfig)
AutoModelForCausalLM.register(BackboneLMConfig, BackboneForCausalLM)
