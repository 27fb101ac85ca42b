"""report.md and the plots of `retain overtrain`: sensitivity and the write's base drop against pretraining
tokens, and the linear theory's pretraining loss after fine-tuning against pretraining time."""

from __future__ import annotations

from typing import Any

from retain.runs.rundir import RunDir


def _corr(x: float | None) -> str:
    return "n/a (fewer than 3 budgets, or a constant column)" if x is None else f"{x:+.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def plots(run: RunDir, s: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s["budgets"]
    tokens = [r["tokens"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for g in rows[0]["loss_change"]:
        a.plot(tokens, [r["loss_change"][g] for r in rows], "o-", label=f"gamma {g}")
    changes = [abs(v) for r in rows for v in r["loss_change"].values() if v]
    # log-like down to the smallest change measured (a change can be negative, so symlog, not log)
    a.set_yscale("symlog", linthresh=min(changes, default=1.0))
    a.set(xscale="log", xlabel="pretraining tokens", ylabel="loss change under perturbation", title="Sensitivity")
    a.legend(fontsize=8)
    for name in rows[0]["media"]:
        b.plot(tokens, [r["media"][name]["base_acc_drop"] * 100 for r in rows], "o-", label=name)
    b.set(xscale="log", xlabel="pretraining tokens", ylabel="base-knowledge drop (points)",
          title="One write into each base")  # fmt: skip
    b.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "overtrain.png")
    plt.close(fig)

    lin = s["linear"]["rows"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([r["t"] for r in lin], [r["pretrain_loss"] for r in lin], "o-", label="before fine-tuning")
    ax.plot([r["t"] for r in lin], [r["pretrain_loss_after_ft"] for r in lin], "o-", label="after fine-tuning")
    ax.set(xscale="log", yscale="log", xlabel="pretraining steps t", ylabel="pretraining loss",
           title="Two-layer linear network")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "linear.png")
    plt.close(fig)


def write_report(run: RunDir, cfg, s: dict[str, Any]) -> None:
    plots(run, s)
    rows, t = s["budgets"], s["trends"]
    gammas = list(rows[0]["loss_change"])
    media = list(rows[0]["media"])
    head = ("| tokens / param | steps | tokens | closed-book | open-book | loss | "
            + " | ".join(f"dL gamma {g}" for g in gammas) + " | "
            + " | ".join(f"{m} base drop | {m} ppl drift" for m in media) + " |")  # fmt: skip
    lines = [head, "|" + " ---: |" * (6 + len(gammas) + 2 * len(media))]
    for r in rows:
        lines.append(f"| {r['tokens_per_param']:g} | {r['steps']} | {r['tokens']:,} | {r['closed_book_acc']:.3f} | "
                     f"{r['open_book_acc']:.3f} | {r['loss']:.4f} | "
                     + " | ".join(f"{r['loss_change'][g]:+.4f}" for g in gammas) + " | "
                     + " | ".join(f"{0.0 - r['media'][m]['base_acc_drop'] * 100:+.1f} pt | "
                                  f"{_pct(r['media'][m]['ppl_drift'])}"
                                  for m in media) + " |")  # fmt: skip
    lin = s["linear"]
    monotone = ", ".join(f"gamma {g}: {'yes' if v else 'no'}" for g, v in t["monotone"].items())
    drop = ", ".join(f"{m} {_corr(v)}" for m, v in t["drop_vs_tokens"].items())
    ppl = ", ".join(f"{m} {_corr(v)}" for m, v in t["ppl_vs_tokens"].items()) or "n/a"
    bend = " and rises after it (the inflection)" if lin["inflection_t"] else " (no inflection: it only falls)"
    linear_rows = "\n".join(
        f"| {r['t']} | {r['pretrain_loss']:.4f} | {r['pretrain_loss_after_ft']:.4f} | {r['ft_loss']:.4f} |"
        for r in lin["rows"]
    )
    overrides = f" with `{' '.join(cfg.pretrain_set)}`" if cfg.pretrain_set else ""
    text = f"""# Catastrophic overtraining: {cfg.name}

`{cfg.pretrain}`{overrides} pretrained at {len(rows)} budgets ({s["params"]:,} parameters), each annealed to zero;
sensitivity from {cfg.samples} perturbations per gamma on the known people's biographies, each its own sequence;
one write of `{cfg.write}` into each. Loss change dL is the mean next-token loss change under theta + eps, eps ~ N(0,
gamma^2 Sigma_init); base drop is the write's closed-book base-knowledge drop; ppl drift is the perplexity
change on the known people's biographies after the write.

{chr(10).join(lines)}

- Loss change monotone in pretraining tokens at each gamma: {monotone}.
- Rank correlation of pretraining tokens with the base drop: {drop};
  with the perplexity drift: {ppl}.

![sensitivity and base drop against pretraining tokens](overtrain.png)

### The two-layer linear network

dim {lin["config"]["dim"]}, A's singular values {lin["config"]["s_max"]:g} ... {lin["config"]["s_min"]:g}, B shares
{lin["config"]["shared"]} modes and turns the others by {lin["config"]["angle"]:g} rad, {lin["config"]["ft_steps"]}
fine-tuning steps at lr {lin["config"]["lr"]:g}. The pretraining loss after fine-tuning is lowest after t =
{lin["inflection_t"]} pretraining steps{bend}.

| t | pretraining loss | after fine-tuning | fine-tuning loss |
| ---: | ---: | ---: | ---: |
{linear_rows}

![pretraining loss before and after fine-tuning against pretraining time](linear.png)
"""
    run.write_report(text)
