"""How linear is each layer's map? The linearity score of "Your Transformer is Secretly Linear" (Razzhigaev et
al. 2024), as the reference code (LLM-Microscope, `procrustes_similarity`) computes it:

    X, Y = hidden states at layers l and l + 1, every token pooled (n x d)
    centre each (subtract column means), divide each by its Frobenius norm
    A = pinv(X) Y              an unconstrained least-squares map, not orthogonal Procrustes
    score = 1 - ||X A - Y||_F^2

and "without the residual stream", Y replaced by h_{l+1} - h_l. Reported for real LMs: about 0.99 with the
residual, markedly lower without. The score needs n >> d (with n <= d any X maps onto any Y): the probe
refuses fewer than `min_ratio` x d tokens. The last state transformers returns is after the final norm, as
in the reference.

    retain probe linearity --model runs/base --out runs/linearity-base
    retain probe linearity --model models/smollm2-135m --out runs/linearity-smollm2
    retain probe linearity --model models/smollm2-135m --adapter DIR --out ...   # after a LoRA write
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from retain.errors import RetainError


@dataclass
class ProbeConfig:
    """`retain probe ACTION`: a measurement of one model, written to --out as report.md, probe.json and a plot."""

    action: Literal["linearity"] = "linearity"
    """linearity: the layer linearity score, with and without the residual stream, per layer."""
    model: str = "runs/base"
    """A pretraining run (model/ and world/) or any local causal LM folder."""
    adapter: str | None = None
    """A PEFT LoRA adapter folder applied to the model first (the model after a memory write)."""
    text: str | None = None
    """A UTF-8 text file to run through the model; None: the world's biographies and sessions for a
    pretraining run, else the shipped held-out text and probe questions (retain/data/probe/)."""
    chunk_tokens: int = 128
    """Tokens per sequence the text is cut into."""
    max_tokens: int = 16384
    """Most tokens pooled per layer."""
    min_ratio: float = 4.0
    """Refuse fewer than min_ratio x hidden size tokens (the score is trivially 1 when n <= d)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("chunk_tokens", "max_tokens"):
            if getattr(self, key) < 2:
                raise ValueError(f"{key} must be at least 2, got {getattr(self, key)}")
        if self.min_ratio < 1:
            raise ValueError(f"min_ratio must be at least 1 (n > d tokens), got {self.min_ratio}")


def linearity_score(x: torch.Tensor, y: torch.Tensor) -> float:
    """1 - ||X~ A - Y~||_F^2 for X~, Y~ centred and Frobenius-normalised (n x d) and A their least-squares map."""
    x, y = x.double(), y.double()
    x, y = x - x.mean(0), y - y.mean(0)
    x, y = x / x.norm(), y / y.norm()
    a = torch.linalg.pinv(x) @ y
    return float(1 - (x @ a - y).pow(2).sum())


def scores(hidden: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per layer l (states l -> l + 1), the score with the residual stream and without it (Y = h_{l+1} - h_l)."""
    pairs = list(zip(hidden[:-1], hidden[1:]))
    return {"residual": [linearity_score(a, b) for a, b in pairs],
            "without_residual": [linearity_score(a, b - a) for a, b in pairs]}  # fmt: skip


@torch.no_grad()
def hidden_states(model, chunks: list[list[int]]) -> list[torch.Tensor]:
    """Every layer's states (embeddings first) for the tokens of `chunks`, pooled: a list of (n, d) fp32."""
    from retain.models.device import device_of

    dev, pooled = device_of(model), None
    for ids in chunks:
        out = model(input_ids=torch.tensor([ids], device=dev), output_hidden_states=True)
        states = [h[0].float().cpu() for h in out.hidden_states]
        pooled = [[s] for s in states] if pooled is None else [p + [s] for p, s in zip(pooled, states)]
    return [torch.cat(p) for p in pooled]


def default_text(model_path: Path, seed: int) -> str:
    """The world's biographies and session transcripts for a pretraining run, else the shipped probe text."""
    from retain.continual.stream import PROBE, heldout_paragraphs, resolve_base

    base = resolve_base(model_path)
    if base.world is not None:
        from retain.world.render import bio

        rng = random.Random(seed)
        return "\n".join([bio(e, rng) for e in base.world.known] + [s.transcript for s in base.world.sessions])
    from retain.world.io import load_questions

    qa = [f"Q: {q.text}\nA: {q.answer}" for q in load_questions(PROBE)]
    return "\n".join(heldout_paragraphs(PROBE.parent / "heldout.txt") + qa)


def linearity(cfg: ProbeConfig, out: str | None = None) -> dict:
    """Score every layer of `cfg.model` (with `cfg.adapter`) on `cfg.text`; writes probe.json, report.md and
    linearity.png to `out`."""
    from retain.continual.stream import resolve_base
    from retain.models.build import load_model_and_tokenizer
    from retain.runs.files import atomic_write_json
    from retain.runs.rundir import RunDir

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
    try:
        text = Path(cfg.text).read_text(encoding="utf-8") if cfg.text else default_text(base.path, cfg.seed)
    except UnicodeDecodeError as e:
        raise RetainError(f"text: {cfg.text} is not UTF-8 ({e.reason} at byte {e.start})") from None
    ids = tok(text, add_special_tokens=False)["input_ids"][: cfg.max_tokens]
    d = model.config.hidden_size
    if len(ids) < cfg.min_ratio * d:
        raise RetainError(f"text has {len(ids)} tokens for hidden size {d}; the score needs n >> d: give at least "
                          f"{int(cfg.min_ratio * d)} tokens (a longer text, or lower min_ratio)")  # fmt: skip
    chunks = [ids[i : i + cfg.chunk_tokens] for i in range(0, len(ids), cfg.chunk_tokens)]
    result = scores(hidden_states(model, [c for c in chunks if len(c) >= 2]))
    mean = {k: sum(v) / len(v) for k, v in result.items()}
    record = {"model": str(cfg.model), "adapter": cfg.adapter, "tokens": len(ids), "hidden_size": d,
              "layers": len(result["residual"]), **{f"{k}_per_layer": v for k, v in result.items()},
              **{f"{k}_mean": m for k, m in mean.items()}}  # fmt: skip
    run = RunDir.create("linearity", out)
    atomic_write_json(run / "probe.json", record)
    plot(run, result, cfg)
    rows = "\n".join(f"| {i} | {a:.4f} | {b:.4f} |" for i, (a, b) in
                     enumerate(zip(result["residual"], result["without_residual"])))  # fmt: skip
    run.write_report(f"# Linearity of {cfg.model}{' + ' + cfg.adapter if cfg.adapter else ''}\n\n"
                     f"{len(ids)} tokens pooled (n/d = {len(ids) / d:.1f}), {len(result['residual'])} layers. "
                     f"Mean score {mean['residual']:.4f} with the residual stream, "
                     f"{mean['without_residual']:.4f} without.\n\n![](linearity.png)\n\n"
                     f"| layer | with residual | without |\n| ---: | ---: | ---: |\n{rows}\n")  # fmt: skip
    return {**record, "out": str(run.path)}


def plot(run, result: dict[str, list[float]], cfg: ProbeConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("residual", "with residual"), ("without_residual", "without residual")):
        ax.plot(result[key], marker="o", label=label)
    ax.set(xlabel="layer l (states l -> l + 1)", ylabel="linearity score", title=f"Linearity: {Path(cfg.model).name}")
    ax.set_ylim(min(0.0, *result["without_residual"]), 1.02)
    ax.legend()
    run.savefig(fig, "linearity.png")


def main(cfg: ProbeConfig, out: str | None = None) -> None:
    """CLI entry point of `retain probe`."""
    r = linearity(cfg, out)
    print(f"linearity of {cfg.model}: {r['residual_mean']:.4f} with the residual stream, "
          f"{r['without_residual_mean']:.4f} without ({r['tokens']} tokens, {r['layers']} layers)")  # fmt: skip
    print(f"report: {r['out']}/report.md")
