"""report.md and accuracy.png of a grokking run: train, ID test and OOD test accuracy against steps (log x)."""

from __future__ import annotations

from typing import Any


def write_report(run, cfg, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in run.metrics() if "train" in r]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for key, label in (("train", "train"), ("id_test", "ID test"), ("ood_test", "OOD test")):
        ax.plot([max(r["step"], 1) for r in records], [r[key] for r in records], marker=".", label=label)
    ax.set(xscale="log", xlabel="optimisation step", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"{cfg.task}, loop {cfg.model.loop}, wd {cfg.weight_decay}")  # fmt: skip
    ax.legend()
    run.savefig(fig, "accuracy.png")
    s = summary
    sizes = ", ".join(f"{k} {v:,}" for k, v in s["sizes"].items())
    run.write_report(f"# Grokking: {cfg.task}\n\n"
                     f"{s['steps']:,} steps in {s['seconds']:.0f} s; examples: {sizes}; model "
                     f"{cfg.model.n_layers} layers of {cfg.model.d_model}, loop {cfg.model.loop}.\n\n"
                     "| split | final accuracy | first step at the level |\n| --- | ---: | ---: |\n"
                     f"| train | {s['train']:.3f} | >= 0.99 at {s['train_99_at']} |\n"
                     f"| ID test | {s['id_test']:.3f} | >= 0.9 at {s['id_90_at']} |\n"
                     f"| OOD test | {s['ood_test']:.3f} | >= 0.9 at {s['ood_90_at']} |\n\n"
                     "![](accuracy.png)\n")  # fmt: skip
