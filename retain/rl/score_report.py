"""The report of `retain score`: held-out Acc@t1 and Acc@t2 over iterations per arm, and the final metrics."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from retain.runs.rundir import RunDir


def curves(records: list[dict]) -> plt.Figure:
    """Held-out accuracy of each attempt over iterations: one colour per arm, attempt 1 dashed, one line per seed."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    arms = list(dict.fromkeys(r["arm"] for r in records))
    for i, arm in enumerate(arms):
        for j, seed in enumerate(dict.fromkeys(r["seed"] for r in records if r["arm"] == arm)):
            rs = [r for r in records if r["arm"] == arm and r["seed"] == seed]
            its = [r["iteration"] for r in rs]
            ax.plot(its, [r["acc_t1"] for r in rs], ls="--", color=f"C{i}", alpha=0.7, marker=".")
            ax.plot(its, [r["acc_t2"] for r in rs], color=f"C{i}", marker="o", label=f"{arm}" if j == 0 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out exact match (dashed: attempt 1)")
    ax.set_title("Self-correction: attempt 2 (solid) against attempt 1 (dashed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_report(run: RunDir, cfg: Any, summary: dict[str, Any]) -> None:
    run.savefig(curves([r for r in run.metrics() if "acc_t1" in r]), "attempts.png")
    lines = [f"# SCoRe on {cfg.base} (memory for attempt 2: {cfg.memory})", "",
             f"Instruction between the attempts: `{cfg.instruction}`. Held-out people's questions, greedy; means over "
             f"seeds {cfg.seeds}.", "",
             "| arm | Acc@t1 | Acc@t2 | delta | i->c | c->i | attempt 2 = attempt 1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for arm, m in summary["arms"].items():
        lines.append(f"| {arm} | {m['acc_t1']:.3f} | {m['acc_t2']:.3f} | {m['delta']:+.3f} | {m['i_to_c']:.3f} | "
                     f"{m['c_to_i']:.3f} | {m['same']:.2f} |")  # fmt: skip
    if "score_met" in summary:
        lines += [
            "",
            "SCoRe: delta > 0 with c->i <= half of i->c on every seed: "
            f"{'met' if summary['score_met'] else 'not met'}.",
        ]
    if "naive_fails" in summary:
        lines.append(f"Naive multi-turn RL: delta <= 0 or attempt 2 repeats attempt 1 in >= 90% on every seed: "
                     f"{'yes' if summary['naive_fails'] else 'no'}.")  # fmt: skip
    lines += ["", "![attempts](attempts.png)", ""]
    run.write_report("\n".join(lines))
