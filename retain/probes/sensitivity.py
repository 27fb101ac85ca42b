"""How sensitive are a model's weights? The probe of "Overtrained Language Models Are Harder to Fine-Tune"
(Springer et al. 2025): theta + eps with eps ~ N(0, gamma^2 Sigma_init), Sigma_init the covariance of the
initialisation, and the change in the loss on held-out text, per gamma.

Sigma_init is taken per tensor: the variance of that tensor in a fresh random initialisation of the same
architecture (transformers' own `_init_weights`, seeded), so a norm initialised to ones (variance 0) is not
perturbed, and a weight initialised N(0, 0.02^2) gets N(0, (0.02 gamma)^2) noise. The paper's prediction:
at fixed gamma the loss change grows with pretraining tokens (`retain overtrain` sweeps them).

    retain probe sensitivity --model runs/base --out runs/sensitivity-base
    retain probe sensitivity --model models/smollm2-135m --gammas [0.01,0.1] --out ...
"""

from __future__ import annotations

import math

import torch

from retain.probes.run import ProbeConfig, load


def init_std(model, seed: int = 0) -> dict[str, float]:
    """Per parameter, the standard deviation of a fresh initialisation of `model`'s architecture."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(model.config)
    return {n: float(p.detach().float().std()) if p.numel() > 1 else 0.0 for n, p in fresh.named_parameters()}


def perturbed(model, std: dict[str, float], gamma: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Add eps ~ N(0, gamma^2 std^2) to every parameter in place; returns the original tensors to restore."""
    saved = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            saved[n] = p.detach().clone()
            if std.get(n, 0.0) > 0 and gamma > 0:
                noise = torch.randn(p.shape, generator=generator) * (gamma * std[n])
                p.add_(noise.to(p.device, p.dtype))
    return saved


def restore(model, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(saved[n])


@torch.no_grad()
def loss(model, chunks: list[list[int]]) -> float:
    """Mean next-token loss per token over `chunks`."""
    from retain.models.device import device_of

    total, count = 0.0, 0
    for ids in chunks:
        x = torch.tensor([ids], device=device_of(model))
        logits = model(input_ids=x).logits[0, :-1].float()
        total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
        count += len(ids) - 1
    return total / count


def sensitivity(cfg: ProbeConfig, out: str | None = None) -> dict:
    """Loss change under `cfg.samples` perturbations at each of `cfg.gammas`; writes probe.json, report.md and
    sensitivity.png."""
    from retain.runs.files import atomic_write_json
    from retain.runs.rundir import RunDir

    model, chunks = load(cfg)
    n = sum(len(c) for c in chunks)
    std, base = init_std(model, cfg.seed), loss(model, chunks)
    g = torch.Generator().manual_seed(cfg.seed)
    changes = []
    for gamma in cfg.gammas:
        row = []
        for _ in range(cfg.samples):
            saved = perturbed(model, std, gamma, g)
            row.append(loss(model, chunks) - base)
            restore(model, saved)
        changes.append(row)
    mean = [sum(r) / len(r) for r in changes]
    sd = [math.sqrt(sum((x - m) ** 2 for x in r) / max(1, len(r) - 1)) for r, m in zip(changes, mean)]
    record = {"model": str(cfg.model), "adapter": cfg.adapter, "tokens": n, "loss": base,
              "gammas": cfg.gammas, "changes": changes, "mean_change": mean, "sd_change": sd}  # fmt: skip
    run = RunDir.create("sensitivity", out)
    atomic_write_json(run / "probe.json", record)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.errorbar(cfg.gammas, mean, yerr=sd, marker="o")
    ax.set(xscale="log", xlabel="gamma (noise / init std)", ylabel="loss change", title=f"Sensitivity: {cfg.model}")
    run.savefig(fig, "sensitivity.png")
    rows = "\n".join(f"| {gm} | {m:+.4f} | {s:.4f} |" for gm, m, s in zip(cfg.gammas, mean, sd))
    run.write_report(f"# Sensitivity of {cfg.model}\n\nLoss {base:.4f} on {n} tokens; {cfg.samples} "
                     f"perturbations per gamma.\n\n| gamma | loss change | sd |\n| ---: | ---: | ---: |\n{rows}\n\n"
                     "![](sensitivity.png)\n")  # fmt: skip
    return {**record, "out": str(run.path)}
