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

from pathlib import Path

import torch

from retain.errors import RetainError
from retain.probes.run import ProbeConfig, load


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

    dev, pooled = device_of(model), []
    for ids in chunks:
        out = model(input_ids=torch.tensor([ids], device=dev), output_hidden_states=True)
        pooled.append([h[0].float().cpu() for h in out.hidden_states])
    return [torch.cat(layer) for layer in zip(*pooled)]


def linearity(cfg: ProbeConfig, out: str | None = None) -> dict:
    """Score every layer of `cfg.model` (with `cfg.adapter`) on `cfg.text`; writes probe.json, report.md and
    linearity.png to `out`."""
    from retain.runs.files import atomic_write_json
    from retain.runs.rundir import RunDir

    model, chunks = load(cfg)
    d, n = model.config.hidden_size, sum(len(c) for c in chunks)
    if n < cfg.min_ratio * d:
        raise RetainError(f"text has {n} tokens for hidden size {d}; the score needs n >> d: give at least "
                          f"{int(cfg.min_ratio * d)} tokens (a longer text, or lower min_ratio)")  # fmt: skip
    result = scores(hidden_states(model, chunks))
    mean = {k: sum(v) / len(v) for k, v in result.items()}
    record = {"model": str(cfg.model), "adapter": cfg.adapter, "tokens": n, "hidden_size": d,
              "layers": len(result["residual"]), **{f"{k}_per_layer": v for k, v in result.items()},
              **{f"{k}_mean": m for k, m in mean.items()}}  # fmt: skip
    run = RunDir.create("linearity", out)
    atomic_write_json(run / "probe.json", record)
    plot(run, result, cfg)
    rows = "\n".join(f"| {i} | {a:.4f} | {b:.4f} |" for i, (a, b) in
                     enumerate(zip(result["residual"], result["without_residual"])))  # fmt: skip
    run.write_report(f"# Linearity of {cfg.model}{' + ' + cfg.adapter if cfg.adapter else ''}\n\n"
                     f"{n} tokens pooled (n/d = {n / d:.1f}), {len(result['residual'])} layers. "
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
