"""`retain probe ACTION`: load the model (with an adapter) and the text a probe reads, and run the probe."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from retain.errors import RetainError


@dataclass
class ProbeConfig:
    """`retain probe ACTION`: a measurement of one model, written to --out as report.md, probe.json and a plot."""

    action: Literal["linearity", "sensitivity"] = "linearity"
    """linearity: the layer linearity score, with and without the residual stream, per layer; sensitivity:
    the loss change under Gaussian weight perturbations shaped like the initialisation."""
    model: str = "runs/base"
    """A pretraining run (model/ and world/) or any local causal LM folder."""
    adapter: str | None = None
    """A PEFT LoRA adapter folder applied to the model first (the model after a memory write)."""
    text: str | None = None
    """A UTF-8 text file to run through the model; None: the world's biographies and sessions for a
    pretraining run (one sequence each, as pretraining saw them), else the shipped held-out text and probe
    questions (retain/data/probe/)."""
    sessions: bool = True
    """With a world base and no text: read the session transcripts too, not only the known people's
    biographies (pretraining never trains on a transcript, so they are text the base has not learned)."""
    chunk_tokens: int = 128
    """Tokens per sequence: a text is cut into chunks this long, a world document cut at it."""
    max_tokens: int = 16384
    """Most tokens pooled per layer."""
    min_ratio: float = 4.0
    """Refuse fewer than min_ratio x hidden size tokens (the score is trivially 1 when n <= d)."""
    gammas: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3])
    """sensitivity: perturbation scales (eps ~ N(0, gamma^2 Sigma_init))."""
    samples: int = 4
    """sensitivity: perturbations drawn per gamma."""
    seed: int = 0
    """Seed of the world text (linearity), the fresh initialisation and the perturbations (sensitivity)."""

    def __post_init__(self) -> None:
        if any(g < 0 for g in self.gammas) or not self.gammas:
            raise ValueError(f"gammas must be non-negative and not empty, got {self.gammas}")
        if self.samples < 1:
            raise ValueError(f"samples must be positive, got {self.samples}")
        for key in ("chunk_tokens", "max_tokens"):
            if getattr(self, key) < 2:
                raise ValueError(f"{key} must be at least 2, got {getattr(self, key)}")
        if self.min_ratio < 1:
            raise ValueError(f"min_ratio must be at least 1 (n > d tokens), got {self.min_ratio}")


def default_documents(world, seed: int, sessions: bool = True) -> list[str]:
    """A world's known people's biographies (and its session transcripts), one document each."""
    from retain.world.render import bio

    rng = random.Random(seed)
    return [bio(e, rng) for e in world.known] + [s.transcript for s in world.sessions if sessions]


def default_text() -> str:
    """The shipped held-out text and probe questions, for models without a world."""
    from retain.continual.stream import PROBE, heldout_paragraphs
    from retain.world.io import load_questions

    qa = [f"Q: {q.text}\nA: {q.answer}" for q in load_questions(PROBE)]
    return "\n".join(heldout_paragraphs(PROBE.parent / "heldout.txt") + qa)


def sequences(tok, cfg: ProbeConfig, documents: list[str] | None, text: str | None) -> list[list[int]]:
    """The token sequences a probe reads, `cfg.max_tokens` at most in all. A world's documents go one per
    sequence, each after the BOS token and cut at `cfg.chunk_tokens`, as pretraining fed them: its packed
    examples never attend across documents, and concatenated biographies cost a 10-tokens-per-parameter base
    2.7 nats a token against 0.44 alone (docs/overtrain.md). Any other text is cut into chunks of
    `cfg.chunk_tokens` as it runs."""
    if documents is None:
        ids = tok(text, add_special_tokens=False)["input_ids"][: cfg.max_tokens]
        chunks = [ids[i : i + cfg.chunk_tokens] for i in range(0, len(ids), cfg.chunk_tokens)]
    else:
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        chunks, total = [], 0
        for doc in documents:
            if total >= cfg.max_tokens:
                break
            room = min(cfg.chunk_tokens, cfg.max_tokens - total)
            seq = (bos + tok(doc, add_special_tokens=False)["input_ids"])[:room]
            chunks.append(seq)
            total += len(seq)
    return [c for c in chunks if len(c) >= 2]


def load(cfg: ProbeConfig):
    """The model (eval mode, `cfg.adapter` merged in) and the token sequences it reads (`sequences`); one-line
    errors for a missing text or adapter and text that is not UTF-8, before anything is written."""
    from retain.continual.stream import resolve_base
    from retain.models.build import load_model_and_tokenizer

    base = resolve_base(cfg.model)
    if cfg.text is not None and not Path(cfg.text).is_file():
        raise RetainError(f"text: {cfg.text} is not a file; give a UTF-8 text file or leave text unset")
    if cfg.adapter is not None and not (Path(cfg.adapter) / "adapter_config.json").is_file():
        raise RetainError(f"adapter: {cfg.adapter} holds no PEFT adapter (adapter_config.json)")
    model, tok = load_model_and_tokenizer(base.model_dir)
    if cfg.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter).merge_and_unload()
    model.eval()
    if cfg.text is None:
        if base.world is None:
            return model, sequences(tok, cfg, None, default_text())
        return model, sequences(tok, cfg, default_documents(base.world, cfg.seed, cfg.sessions), None)
    try:
        text = Path(cfg.text).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RetainError(f"text: {cfg.text} is not UTF-8 ({e.reason} at byte {e.start})") from None
    return model, sequences(tok, cfg, None, text)


def main(cfg: ProbeConfig, out: str | None = None) -> None:
    """CLI entry point of `retain probe`."""
    if cfg.action == "linearity":
        from retain.probes.linearity import linearity

        r = linearity(cfg, out)
        print(f"linearity of {cfg.model}: {r['residual_mean']:.4f} with the residual stream, "
              f"{r['without_residual_mean']:.4f} without ({r['tokens']} tokens, {r['layers']} layers)")  # fmt: skip
    else:
        from retain.probes.sensitivity import sensitivity

        r = sensitivity(cfg, out)
        print(
            f"sensitivity of {cfg.model}: loss {r['loss']:.4f}; change at gamma "
            + ", ".join(f"{g}: {d:+.4f}" for g, d in zip(r["gammas"], r["mean_change"]))
        )
    print(f"report: {r['out']}/report.md")
