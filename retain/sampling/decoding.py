"""How a model writes: greedy, or sampled through transformers' own logits processors (temperature, top-k,
top-p, min-p, locally typical), optionally with a learned adaptive temperature.

`processors(cfg)` builds the list in the order `model.generate` applies them (temperature, top-k, top-p,
min-p, typical), so the package's `generate` with a seeded generator draws what `model.generate` draws under the
same seed (tests/test_sampling.py checks it). Locally typical sampling (Meister et al. 2023) keeps the
tokens whose surprisal is closest to the conditional entropy, up to mass `typical_p`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from retain.models.generate import generate
from retain.models.text import text_format
from retain.sampling.adaptive import AdaptiveTemperature, TemperatureHead


@dataclass
class DecodingConfig:
    """A decoding strategy. temperature 0 and no adaptive head: greedy."""

    temperature: float = 0.0
    """Fixed sampling temperature; 0 decodes greedily (unless `adaptive` is set)."""
    top_k: int = 0
    """Keep the k most likely tokens (0: off)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens with this much mass (1: off)."""
    min_p: float = 0.0
    """Min-p sampling (Nguyen et al. 2024): keep the tokens at least this fraction as likely as the likeliest
    (0: off). Removes unlikely slips (a wrong surname) while keeping near-ties (which fact comes next)."""
    typical_p: float = 1.0
    """Locally typical sampling: keep the tokens closest to the conditional entropy up to this mass (1: off)."""
    adaptive: Literal["none", "linear", "exponential", "inverse_sigmoid"] = "none"
    """A learned per-token temperature: the head at `head` maps its diversity score to [t_min, t_max] by this
    mapping (replaces `temperature`)."""
    head: str = ""
    """adaptive: directory of a trained temperature head (head.json, head.safetensors)."""
    t_min: float = 0.1
    """adaptive: temperature at diversity score 0 (facts)."""
    t_max: float = 1.5
    """adaptive: temperature at diversity score 1 (free wording)."""
    start_temperature: float = 0.0
    """Temperature of the first `start_tokens` tokens of each sentence (after `.`, `?`, `!`, `:` or the
    prompt's end), where a writer chooses what to say next rather than how; 0: the same as elsewhere."""
    start_tokens: int = 3
    """start_temperature: how many tokens from each sentence's start it covers."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        for key in ("top_p", "typical_p"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)}")
        if self.adaptive != "none" and not self.head:
            raise ValueError("adaptive temperature needs `head`: the directory of a trained head")
        if not 0 < self.t_min <= self.t_max:
            raise ValueError(f"need 0 < t_min <= t_max, got {self.t_min}, {self.t_max}")
        if self.start_temperature < 0 or self.start_tokens < 1:
            raise ValueError(f"need start_temperature >= 0 and start_tokens >= 1, got {self.start_temperature}, "
                             f"{self.start_tokens}")  # fmt: skip
        if self.start_temperature > 0 and not self.sampled:
            raise ValueError("start_temperature needs sampling: set temperature > 0 (or an adaptive head)")

    @property
    def sampled(self) -> bool:
        return self.temperature > 0 or self.adaptive != "none"

    def label(self) -> str:
        """A short name for plots and tables, e.g. 'T=0.7', 'top-p 0.9', 'typical 0.2', 'adaptive exp'."""
        if self.adaptive != "none":
            return f"adaptive {self.adaptive}"
        if not self.sampled:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        parts += [f"top-k {self.top_k}"] if self.top_k else []
        parts += [f"top-p {self.top_p:g}"] if self.top_p < 1 else []
        parts += [f"min-p {self.min_p:g}"] if self.min_p else []
        parts += [f"typical {self.typical_p:g}"] if self.typical_p < 1 else []
        parts += [f"T={self.start_temperature:g} at sentence starts"] if self.start_temperature else []
        return ", ".join(parts)


SENTENCE_ENDS = (".", "?", "!", ":")


class SentenceStartTemperature(LogitsProcessor):
    """Rescales the scores of rows whose next token is among the first `n` of a sentence, so that they are
    sampled at temperature `start` where the rest are at `base` (the warper before it already applied `base`).
    A sentence starts after any of `end_ids` (the prompt ends with one, e.g. `Notes:`)."""

    def __init__(self, start: float, base: float, n: int, end_ids: list[int]):
        self.factor, self.n = base / start, n
        self.end_ids = torch.tensor(end_ids, dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ends = torch.isin(input_ids, self.end_ids.to(input_ids.device))
        since_end = ends.flip(1).int().argmax(1)  # tokens after the last sentence end (0 if there is none too)
        at_start = ends.any(1) & (since_end < self.n)
        return torch.where(at_start[:, None], scores * self.factor, scores)


def sentence_end_ids(tokenizer) -> list[int]:
    """Token ids that end a sentence for `SentenceStartTemperature` (those the tokenizer has whole)."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SENTENCE_ENDS]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


def processors(cfg: DecodingConfig, adaptive: AdaptiveTemperature | None = None,
               end_ids: list[int] | None = None) -> LogitsProcessorList:  # fmt: skip
    """transformers' warpers for `cfg`, in `model.generate`'s order; `adaptive` takes the temperature's place.
    `start_temperature` needs the tokenizer's sentence-end ids (`sentence_end_ids`)."""
    out = LogitsProcessorList()
    if adaptive is not None:
        out.append(adaptive)
    elif cfg.temperature > 0 and cfg.temperature != 1.0:
        out.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.start_temperature > 0:
        if not end_ids:
            raise ValueError("start_temperature needs the tokenizer's sentence-end ids (sentence_end_ids)")
        base = 1.0 if adaptive is not None else cfg.temperature
        out.append(SentenceStartTemperature(cfg.start_temperature, base, cfg.start_tokens, end_ids))
    if cfg.top_k:
        out.append(TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1.0:
        out.append(TopPLogitsWarper(cfg.top_p))
    if cfg.min_p > 0:
        out.append(MinPLogitsWarper(cfg.min_p))
    if cfg.typical_p < 1.0:
        out.append(TypicalLogitsWarper(cfg.typical_p))
    return out


@contextmanager
def decoding(cfg: DecodingConfig, model: torch.nn.Module, head: TemperatureHead | None = None, tokenizer=None):
    """Yields the processor list for `cfg` on `model` (hooking the adaptive head in while inside)."""
    end_ids = sentence_end_ids(tokenizer) if tokenizer is not None and cfg.start_temperature > 0 else None
    if cfg.adaptive == "none":
        yield processors(cfg, end_ids=end_ids)
        return
    head = head if head is not None else TemperatureHead.load(cfg.head)
    with AdaptiveTemperature(model, head, cfg.adaptive, cfg.t_min, cfg.t_max) as adaptive:
        yield processors(cfg, adaptive, end_ids)


def sample(model, tokenizer, prompts: list[list[int]], cfg: DecodingConfig, *, max_new_tokens: int,
           generator: torch.Generator | None = None, head: TemperatureHead | None = None,
           batch_size: int = 64) -> list[list[int]]:  # fmt: skip
    """Continue `prompts` (token ids) with decoding `cfg`; returns the new ids of each, without the eos."""
    with decoding(cfg, model, head, tokenizer) as procs:
        ends = sorted({text_format(tokenizer).end, tokenizer.eos_token_id})  # the end of a written text
        return generate(model, prompts, eos_id=ends, pad_id=tokenizer.pad_token_id,
                        max_new_tokens=max_new_tokens, do_sample=cfg.sampled, logits_processor=procs or None,
                        generator=generator, batch_size=batch_size)  # fmt: skip
