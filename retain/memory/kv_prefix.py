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
With `route: entity` a prompt reads only the blocks whose sessions name a person it names (`routes`): the
model here cannot tell two sessions' people apart in one context (binding), so blocks it does not need are
kept out of its sight, as the context's `focus: entity` keeps sentences out.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch

from retain.errors import RetainError
from retain.fermi.formulas import kv_prefix_params
from retain.memory import distill as D
from retain.memory import storage
from retain.memory.base import Material
from retain.memory.names import fold, index_names, mentions, names
from retain.memory.weights import WeightMemory
from retain.models.generate import cache_kwarg, kv_of, prefix_cache
from retain.runs.seed import derive_seed

KV = list[tuple[torch.Tensor, torch.Tensor]]


def shift(model, prefix: KV, offset: int) -> KV:
    """The prefix moved `offset` positions on: RoPE rotates a key at position p by R(p), and R(p + offset) =
    R(offset) R(p), so rotating every stored key by R(offset) re-positions it (values carry no position)."""
    from transformers.models.llama.modeling_llama import rotate_half

    rotary = next((m for n, m in model.named_modules() if n.endswith("rotary_emb")), None)
    if rotary is None:
        raise RetainError(f"{type(model).__name__} has no rotary embedding module to move a KV prefix with; "
                          "compose prefixes without re-positioning (no model), or use a Llama-family base")  # fmt: skip
    k0 = prefix[0][0]
    cos, sin = rotary(k0, torch.full((1, 1), offset, dtype=torch.long, device=k0.device))  # (1, 1, head_dim)
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


def routes(blocks: list[set[str]], texts: list[str], P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For prefix blocks laid out as one BOS sink then P - 1 positions per block (the names each block's
    session mentions in `blocks`), per text: the positions it reads, (B, 1 + len(blocks)(P - 1)) 0/1 (the
    sink, and the blocks whose names it mentions), and the position it starts at (B,): right after the last
    block it reads, so a text reading one block sees it at the distance it was trained at."""
    seen = torch.zeros((len(texts), 1 + len(blocks) * (P - 1)), dtype=torch.long)
    seen[:, 0] = 1
    start = torch.ones(len(texts), dtype=torch.long)
    for i, text in enumerate(texts):
        wanted = names(text)
        for b, keys in enumerate(blocks):
            if mentions(keys, wanted):
                seen[i, 1 + b * (P - 1) : 1 + (b + 1) * (P - 1)] = 1
                start[i] = 1 + (b + 1) * (P - 1)
    return seen, start


def forward_with_prefix(model, prefix: KV | None, ids: torch.Tensor, mask: torch.Tensor,
                        route: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """Logits of right-padded `ids` after `prefix` (positions P.. ; the prefix is visible to every row), or
    with `route` only the prefix positions each row reads, the row starting where it says (`routes`)."""
    B = ids.shape[0]
    P = prefix[0][0].shape[2] if prefix else 0
    seen, start = route if route is not None else (mask.new_ones((B, P)), torch.full((B,), P))
    seen, start = seen.to(mask.device), start.to(mask.device)
    position = (mask.cumsum(-1) - 1).clamp(min=0) + start[:, None]
    full = torch.cat([seen.to(mask.dtype), mask], dim=1)
    out = model(input_ids=ids, attention_mask=full, position_ids=position, use_cache=True,
                **{cache_kwarg(model): prefix_cache(prefix, B, model.config)})  # fmt: skip
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
        self.names: list[set[str]] = []  # route entity: per block, the names its sessions mention
        if cfg.prefix_init == "text":
            if self.base_text is None:
                raise RetainError("prefix_init 'text' needs base text to start from; use prefix_init: session")
            self.from_text()

    def from_text(self, *tags) -> None:
        """The block being written <- the KV cache of unrelated text, drawn under the medium's name and `tags`."""
        self.initialise(self.text_tokens(random.Random(derive_seed(self.seed, "kv_prefix", self.cfg.name, *tags))))

    def text_tokens(self, rng: random.Random) -> list[int]:
        """The start token (BOS) and at least P tokens of unrelated text."""
        ids = list(self.fmt.start)
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

    def load(self, prefix: KV, names: list[set[str]] | None = None) -> None:
        """The memory <- `prefix`, one block (position 0 the frozen sink, the rest trainable); for `route`, the
        names of each of the blocks it holds (one sink, then P - 1 positions per block, as `compose` with a
        shared sink lays them out)."""
        if names is not None and prefix[0][0].shape[2] != 1 + len(names) * (self.cfg.prompt_tokens - 1):
            raise RetainError(f"a prefix of {prefix[0][0].shape[2]} positions is not {len(names)} block(s) of "
                              f"prompt_tokens={self.cfg.prompt_tokens} behind one sink; "
                              "compose with shared_sink")  # fmt: skip
        self.frozen, self.names = None, list(names or [])
        self.set_block(prefix)

    def set_block(self, prefix: KV) -> None:
        """The block being written <- `prefix`: its sink frozen, the rest trainable."""
        self.sink = [(k[:, :, :1].detach().float(), v[:, :, :1].detach().float()) for k, v in prefix]
        self.keys = [torch.nn.Parameter(k[:, :, 1:].detach().float().clone()) for k, _ in prefix]  # fp32 master
        self.values = [torch.nn.Parameter(v[:, :, 1:].detach().float().clone()) for _, v in prefix]

    def write(self, material: Material):
        if self.keys and self.cfg.blocks == "per_session":  # freeze what is written; this session gets a new block
            frozen = self.prefix()
            limit = getattr(self.model.config, "max_position_embeddings", None)
            if limit is not None and frozen[0][0].shape[2] + self.cfg.prompt_tokens > limit:
                raise RetainError(f"media '{self.cfg.name}': another block of {self.cfg.prompt_tokens} positions "
                                  f"does not fit the model's context of {limit}; "
                                  "lower prompt_tokens or use blocks: one")  # fmt: skip
            self.frozen, self.sink, self.keys, self.values = frozen, [], [], []
            if self.cfg.prefix_init == "text":
                self.from_text(material.session)
        text = material.transcript or material.text
        if self.cfg.blocks == "per_session" or not self.names:
            self.names.append(set())
        self.names[-1] = fold(self.names[-1] | index_names(text))
        if not self.keys:  # prefix_init session: the session's own cache
            self.initialise(list(self.fmt.start) + self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return super().write(material)

    @contextmanager
    def bare(self):
        held = self.sink, self.keys, self.values, self.frozen, self.names
        self.sink, self.keys, self.values, self.frozen, self.names = [], [], [], None, []
        try:
            yield self
        finally:
            self.sink, self.keys, self.values, self.frozen, self.names = held

    def base_pool(self, material: Material, rng: random.Random) -> tuple[list, int]:
        """Routed (`route: entity`): a block is read by the questions about every person its session names,
        the known people the session mentions (a mentor, someone who moved) among them, and no other query
        reaches it. So its base replay is about those people: the bare model reads a base text about one of
        them and asks itself about it (` Q:`, as `base_study`), and the teacher is the session's, the model
        with the transcript's sentences naming that person in front, so what the session changed about them
        is taught as changed and the rest as the model knew it."""
        if self.cfg.route == "none" or self.base_text is None or not self.base_text.indexed:
            return super().base_pool(material, rng)
        draw = self.base_text.about(self.names[-1]) if self.cfg.base_replay else None
        if draw is None:
            return [], 0
        with self.bare():
            queries, spent = D.base_study(self, [draw(rng) for _ in range(self.cfg.base_queries)], rng)
        focused = self.cfg.focus == "entity"
        contexts = D.focused_contexts(self, material.transcript, queries) if focused else self.teacher_context(material)
        teachers, more = D.teach(self, contexts, queries, self.cfg.top_k, temperature=self.cfg.teacher_temperature)
        return teachers, spent + more

    def trainable(self) -> list[torch.nn.Parameter]:
        return [*self.keys, *self.values]

    def live(self) -> KV | None:
        """The whole prefix, sink and trained positions, with the trained ones' gradients (after the frozen
        blocks of earlier sessions, if any)."""
        if not self.keys:
            return None
        mine = [
            (torch.cat([sk, k], 2), torch.cat([sv, v], 2)) for (sk, sv), k, v in zip(self.sink, self.keys, self.values)
        ]
        return mine if self.frozen is None else compose(self.frozen, mine, model=self.model, shared_sink=True)

    def prefix(self) -> KV | None:
        live = self.live()
        return [(k.detach(), v.detach()) for k, v in live] if live else None

    def route(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.cfg.route == "none" or not self.keys or not self.names:  # nothing to route by: read it all
            return None
        return routes(self.names, texts, self.cfg.prompt_tokens)

    def forward(self, ids, mask):
        live = self.live()
        if live is None:  # before the first write nothing holds the start token (BOS): put it in front
            bos = ids.new_full((ids.shape[0], 1), self.fmt.start[0])
            ids, mask = torch.cat([bos, ids], 1), torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
            return forward_with_prefix(self.model, None, ids, mask)[:, 1:]
        route = self.route([self.tokenizer.decode(row[m.bool()]) for row, m in zip(ids, mask)])
        return forward_with_prefix(self.model, live, ids, mask, route)

    def positions(self) -> int:
        """Positions the prefix holds: the block being written (P before the first write; a loaded prefix as
        long as it is), and P - 1 more for every frozen block (one sink for all)."""
        live = 1 + self.keys[0].shape[2] if self.keys else self.cfg.prompt_tokens
        return live + (self.frozen[0][0].shape[2] - 1 if self.frozen else 0)

    def params(self) -> int:
        return kv_prefix_params(self.arch, self.positions())

    def nbytes(self) -> int:
        """The prefix at `dtype`, and with `route` the names kept beside each block (UTF-8, one byte apart)."""
        index = sum(len(n.encode()) + 1 for keys in self.names for n in keys) if self.cfg.route != "none" else 0
        return storage.stored_bytes(self.params(), self.cfg.dtype) + index
