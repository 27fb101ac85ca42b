"""The report of `retain stochq`: returns over episodes per action-space size, time per step against n."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from retain.runs.rundir import RunDir


def returns(results: list[dict], table: bool) -> plt.Figure:
    """Training return (or, on a table, the greedy policy's value / V*) per episode: one panel per n."""
    sizes = sorted({r["n"] for r in results})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), squeeze=False, sharey=True)
    key = "value_ratio" if table else "return"
    for ax, n in zip(axes[0], sizes):
        for agent in dict.fromkeys(r["agent"] for r in results):
            runs = [r for r in results if r["n"] == n and r["agent"] == agent]
            for i, r in enumerate(runs):
                ax.plot([e[key] for e in r["episodes"]], lw=1.2, alpha=0.8,
                        color=f"C{list(dict.fromkeys(x['agent'] for x in results)).index(agent)}",
                        label=agent if i == 0 else None)  # fmt: skip
        ax.set_title(f"n = {n} actions")
        ax.set_xlabel("episode")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("greedy value / V*" if table else "episode return")
    axes[0][0].legend(fontsize=8)
    return fig


def step_time(summary: dict) -> plt.Figure:
    """Seconds per step (choice + update) against n, log-log, per agent."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    agents = dict.fromkeys(r["agent"] for r in summary["rows"].values())
    for agent in agents:
        rows = sorted((r for r in summary["rows"].values() if r["agent"] == agent), key=lambda r: r["n"])
        ax.plot([r["n"] for r in rows], [r["step_seconds"] * 1e3 for r in rows], marker="o", label=agent)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("actions n")
    ax.set_ylabel("ms per step")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def write_report(run: RunDir, cfg: Any, results: list[dict], summary: dict[str, Any]) -> None:
    table = cfg.env == "table"
    run.savefig(returns(results, table), "returns.png")
    run.savefig(step_time(summary), "step_time.png")
    final = "greedy value / V*" if table else f"greedy return ({cfg.test_episodes} test episodes)"
    lines = [f"# stochq: {cfg.env}", "", f"Agents {', '.join(cfg.agents)}; n = {cfg.n_actions}; seeds {cfg.seeds}; "
             f"{cfg.episodes} episodes of <= {cfg.max_steps} steps.", "",
             f"| agent | n | ms per step | Q values per step | {final} |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in summary["rows"].values():
        lines.append(f"| {r['agent']} | {r['n']} | {r['step_seconds'] * 1e3:.2f} | {r['evaluated_per_step']:.0f} | "
                     f"{r['final']:.3f} |")  # fmt: skip
    if "speedup" in summary:
        ratio = "-" if summary["return_ratio"] is None else f"{summary['return_ratio']:.2f}"
        lines += ["", f"At n = {summary['at_n']}: the stochastic agent takes {summary['speedup']:.1f}x less time per "
                  f"step; its final return is {ratio} x the exact agent's" + ("" if table else " (both counted above "
                  "the random policy's)") + "."]  # fmt: skip
    lines += ["", "![returns](returns.png)", "", "![time per step](step_time.png)", ""]
    run.write_report("\n".join(lines))
