"""Summary writers: what of a session gets written into memory.

- `oracle`: the session's facts, one plain sentence each: an upper bound, never the default.
- `transcript`: the raw session.
- `model`: the model's own notes on the session (the generic summary it learned in pretraining), greedy or
  sampled. The RL outer loop plugs a trained policy in here: any callable `Session -> Material` is a writer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from retain.eval.qa import encode
from retain.memory.base import Material
from retain.models.text import text_format
from retain.sampling import DecodingConfig, TemperatureHead, sample
from retain.world import render as R
from retain.world.world import Session

Writer = Callable[[Session], Material]


@dataclass
class WriterConfig:
    """Which writer turns a session into material, and how the model writes."""

    kind: Literal["oracle", "transcript", "model"] = "transcript"
    """oracle (the world's facts: an upper bound), transcript (the raw session), model (its own notes)."""
    max_new_tokens: int = 96
    """model: most tokens of a written summary."""
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    """model: how it writes: greedy (default), a fixed temperature with top-k / top-p / typical, or an
    adaptive temperature head (docs/decoding.md)."""
    seed: int = 0
    """model: seed of the sampling."""


def session_tokens(tokenizer, session: Session) -> int:
    return len(tokenizer(session.transcript, add_special_tokens=False)["input_ids"])


def make_writer(cfg: WriterConfig, model: torch.nn.Module | None = None, tokenizer=None) -> Writer:
    """The writer `cfg` names; `model` writes its own notes when kind is model."""

    def oracle(s: Session) -> Material:
        return Material(s.index, R.oracle_notes(s), session_tokens(tokenizer, s), list(s.facts), list(s.updates),
                        s.transcript, list(s.questions), s)  # fmt: skip

    def transcript(s: Session) -> Material:
        return Material(s.index, s.transcript, session_tokens(tokenizer, s), transcript=s.transcript,
                        questions=list(s.questions), world_session=s)  # fmt: skip

    head = TemperatureHead.load(cfg.decoding.head) if cfg.kind == "model" and cfg.decoding.adaptive != "none" else None

    def written(s: Session) -> Material:
        gen = torch.Generator().manual_seed(cfg.seed + s.index)
        out = sample(model, tokenizer, [encode(tokenizer, text_format(tokenizer).summary_prompt(s.transcript))],
                     cfg.decoding, max_new_tokens=cfg.max_new_tokens, generator=gen, head=head)[0]  # fmt: skip
        return Material(s.index, tokenizer.decode(out, skip_special_tokens=True).strip(), session_tokens(tokenizer, s),
                        transcript=s.transcript, questions=list(s.questions), world_session=s)  # fmt: skip

    return {"oracle": oracle, "transcript": transcript, "model": written}[cfg.kind]
