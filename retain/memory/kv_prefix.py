"""A trained KV cache (Cartridges): P key and value vectors per layer and KV head, entered through the model's
cache at positions 0..P-1; every prompt continues at position P, without a BOS of its own (the prefix
holds one). The model stays frozen; the memory is P x layers x 2 x kv_heads x head_dim numbers.

Initialisation (`prefix_init`): the KV cache of the first P tokens of BOS + the first session's transcript
(at its first write; before it the prefix is empty), or of BOS + unrelated text (a biography of a known
person). A prefix initialised from a whole session's cache gives exactly the logits of the model with
that session in context (tests/test_distill.py).

Position 0 is BOS, the attention sink, and stays frozen (Cartridges freezes its first token too): every
prefix of a model then starts with the same sink, so prefixes compose with one sink in front
(`compose(..., shared_sink=True)`) instead of one per prefix.

With `blocks: per_session` every session gets a new block of P positions after the frozen blocks of the
sessions before it: the block is written in their company, which is what lets blocks compose (docs/distill.md).
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch

from retain.errors import RetainError
from retain.fermi.formulas import kv_prefix_params
from retain.memory import storage
from retain.memory.base import Material
from retain.memory.weights import WeightMemory
from retain.models.generate import cache_kwarg, kv_pairs, prefix_cache
from retain.runs.seed import derive_seed

KV = list[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def kv_of(model, ids: list[int]) -> KV:
    """The KV cache of `ids` (from position 0): one (keys, values) pair of shape (1, kv_heads, len, head_dim)
    per layer."""
    return [(k.clone(), v.clone()) for k, v in kv_pairs(model(input_ids=torch.tensor([ids]), use_cache=True))]


def shift(model, prefix: KV, offset: int) -> KV:
    """The prefix moved `offset` positions on: RoPE rotates a key at position p by R(p), and R(p + offset) =
    R(offset) R(p), so rotating every stored key by R(offset) re-positions it (values carry no position)."""
    from transformers.models.llama.modeling_llama import rotate_half

    rotary = next(m for n, m in model.named_modules() if n.endswith("rotary_emb"))
    k0 = prefix[0][0]
    cos, sin = rotary(k0, torch.full((1, 1), offset, dtype=torch.long))  # (1, 1, head_dim)
    cos, sin = cos[:, None].to(k0.dtype), sin[:, None].to(k0.dtype)
    return [(k * cos + rotate_half(k) * sin, v) for k, v in prefix]


def compose(*prefixes: KV, model=None, shared_sink: bool = False) -> KV:
    """Prefixes side by side along the positions (Cartridges' composition), layer by layer. With
    `shared_sink`, every prefix but the first loses its position 0 (the frozen BOS sink they all share). With
    `model`, each prefix's keys are first moved to the positions it takes in the composition (`shift`);
    without it they keep the positions they were trained at."""
    if shared_sink:
        prefixes = prefixes[:1] + tuple([(k[:, :, 1:], v[:, :, 1:]) for k, v in p] for p in prefixes[1:])
    if model is not None:
        offset = 1 if shared_sink else 0  # a prefix without its sink was trained from position 1
        starts = [sum(p[0][0].shape[2] for p in prefixes[:j]) - (offset if j else 0) for j in range(len(prefixes))]
        prefixes = tuple(shift(model, p, o) if o else p for p, o in zip(prefixes, starts))
    return [(torch.cat([p[i][0] for p in prefixes], dim=2), torch.cat([p[i][1] for p in prefixes], dim=2))
            for i in range(len(prefixes[0]))]  # fmt: skip


def forward_with_prefix(model, prefix: KV | None, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of right-padded `ids` after `prefix` (positions P.. ; the prefix is visible to every row)."""
    B = ids.shape[0]
    P = prefix[0][0].shape[2] if prefix else 0
    position = (mask.cumsum(-1) - 1).clamp(min=0) + P
    full = torch.cat([torch.ones((B, P), dtype=mask.dtype), mask], dim=1)
    out = model(input_ids=ids, attention_mask=full, position_ids=position, use_cache=True,
                **{cache_kwarg(model): prefix_cache(prefix, B)})  # fmt: skip
    return out.logits


class KVPrefixMemory(WeightMemory):
    """The `kv_prefix` medium: a trainable KV cache of `prompt_tokens` positions."""

    bos = False

    def __init__(self, model, tokenizer, cfg, **kw):
        model.requires_grad_(False)
        super().__init__(model, tokenizer, cfg, **kw)
        self.sink: KV = []  # position 0 of the prefix, BOS: frozen
        self.keys: list[torch.nn.Parameter] = []  # positions 1..P-1, trained
        self.values: list[torch.nn.Parameter] = []
        self.frozen: KV | None = None  # blocks per_session: the earlier sessions' blocks, composed, one sink
        if cfg.prefix_init == "text":
            if self.base_text is None:
                raise RetainError("prefix_init 'text' needs base text to start from; use prefix_init: session")
            self.from_text()

    def from_text(self, *tags) -> None:
        """The block being written <- the KV cache of unrelated text, drawn under the medium's name and `tags`."""
        self.initialise(self.text_tokens(random.Random(derive_seed(self.seed, "kv_prefix", self.cfg.name, *tags))))

    def text_tokens(self, rng: random.Random) -> list[int]:
        """BOS and at least P tokens of unrelated text."""
        ids = [self.tokenizer.bos_token_id]
        while len(ids) < self.cfg.prompt_tokens:
            ids += self.tokenizer(self.base_text(rng), add_special_tokens=False)["input_ids"]
        return ids

    def initialise(self, ids: list[int]) -> None:
        """The block being written <- the KV cache of the first P of `ids` (frozen blocks stay)."""
        P = self.cfg.prompt_tokens
        if len(ids) < P:
            raise RetainError(f"kv_prefix init needs {P} tokens, the session has {len(ids)}; lower prompt_tokens "
                              "or use prefix_init: text")  # fmt: skip
        self.set_block(kv_of(self.model, ids[:P]))

    def load(self, prefix: KV) -> None:
        """The memory <- `prefix`, one block (position 0 the frozen sink, the rest trainable)."""
        self.frozen = None
        self.set_block(prefix)

    def set_block(self, prefix: KV) -> None:
        """The block being written <- `prefix`: its sink frozen, the rest trainable."""
        self.sink = [(k[:, :, :1].detach(), v[:, :, :1].detach()) for k, v in prefix]
        self.keys = [torch.nn.Parameter(k[:, :, 1:].detach().clone()) for k, _ in prefix]
        self.values = [torch.nn.Parameter(v[:, :, 1:].detach().clone()) for _, v in prefix]

    def write(self, material: Material):
        if self.keys and self.cfg.blocks == "per_session":  # freeze what is written; this session gets a new block
            frozen = self.prefix()
            limit = getattr(self.model.config, "max_position_embeddings", None)
            if limit is not None and frozen[0][0].shape[2] + self.cfg.prompt_tokens > limit:
                raise RetainError(f"media '{self.cfg.name}': another block of {self.cfg.prompt_tokens} positions "
                                  f"does not fit the model's context of {limit}; lower prompt_tokens or use blocks: one")  # fmt: skip
            self.frozen, self.sink, self.keys, self.values = frozen, [], [], []
            if self.cfg.prefix_init == "text":
                self.from_text(material.session)
        if not self.keys:  # prefix_init session: the session's own cache
            text = material.transcript or material.text
            self.initialise([self.tokenizer.bos_token_id] + self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return super().write(material)

    @contextmanager
    def bare(self):
        held = self.sink, self.keys, self.values, self.frozen
        self.sink, self.keys, self.values, self.frozen = [], [], [], None
        try:
            yield self
        finally:
            self.sink, self.keys, self.values, self.frozen = held

    def trainable(self) -> list[torch.nn.Parameter]:
        return [*self.keys, *self.values]

    def live(self) -> KV | None:
        """The whole prefix, sink and trained positions, with the trained ones' gradients (after the frozen
        blocks of earlier sessions, if any)."""
        if not self.keys:
            return None
        mine = [(torch.cat([sk, k], 2), torch.cat([sv, v], 2)) for (sk, sv), k, v in zip(self.sink, self.keys, self.values)]
        return mine if self.frozen is None else compose(self.frozen, mine, model=self.model, shared_sink=True)

    def prefix(self) -> KV | None:
        live = self.live()
        return [(k.detach(), v.detach()) for k, v in live] if live else None

    def logits(self, ids, mask):
        live = self.live()
        if live is None:  # before the first write nothing holds the BOS: put it in front
            bos = torch.full((ids.shape[0], 1), self.tokenizer.bos_token_id, dtype=ids.dtype)
            ids, mask = torch.cat([bos, ids], 1), torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
            return forward_with_prefix(self.model, None, ids, mask)[:, 1:]
        return forward_with_prefix(self.model, live, ids, mask)

    def positions(self) -> int:
        """Positions the prefix holds: P, and P - 1 more for every frozen block (one sink for all)."""
        return self.cfg.prompt_tokens + (self.frozen[0][0].shape[2] - 1 if self.frozen else 0)

    def params(self) -> int:
        return kv_prefix_params(self.arch, self.positions())

    def nbytes(self) -> int:
        return storage.stored_bytes(self.params(), self.cfg.dtype)
