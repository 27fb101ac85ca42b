"""The RL run's report: reward and held-out recall over iterations, self-edit lengths, and what the policy
writes before and after RL."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from retain.runs.rundir import RunDir


def curve(records: list[dict], fixed: dict) -> plt.Figure:
    """Training reward and held-out recall over iterations, against the fixed references."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    tr = [r for r in records if "reward" in r]
    ho = [(r["iteration"], r["heldout_recall"]) for r in records if "heldout_recall" in r]
    graded = any(abs(r["reward"] - r["recall"]) > 1e-6 for r in tr)  # a graded reward or a token cost
    if tr:
        ax.plot([r["iteration"] for r in tr], [r["recall"] for r in tr], lw=1.2, alpha=0.8,
                label="training recall (sampled self-edits)" + ("" if graded else " = reward"))  # fmt: skip
    if graded:
        ax2 = ax.twinx()
        ax2.plot([r["iteration"] for r in tr], [r["reward"] for r in tr], lw=1, color="tab:red", alpha=0.7)
        ax2.set_ylabel("training reward (red)", color="tab:red")
    if ho:
        ax.plot(*zip(*ho), marker="o", lw=2, label="held-out recall (greedy self-edits)")
    for key, style in (("oracle", ":"), ("transcript", "--")):
        if fixed.get(key):
            ax.axhline(fixed[key]["recall"], ls=style, color="gray", label=f"held-out, {key} written")
    ax.set_xlabel("RL iteration")
    ax.set_ylabel("exact-match recall")
    ax.set_title("Outer loop: reward and held-out recall")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def lengths(records: list[dict]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    tr = [(r["iteration"], r["length"]) for r in records if "length" in r]
    ho = [(r["iteration"], r["heldout_length"]) for r in records if "heldout_length" in r]
    if tr:
        ax.plot(*zip(*tr), lw=1.2, label="sampled (training)")
    if ho:
        ax.plot(*zip(*ho), marker="o", lw=2, label="greedy (held-out)")
    ax.set_xlabel("RL iteration")
    ax.set_ylabel("tokens per self-edit")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_report(run: RunDir, cfg: Any, fixed: dict, last: dict, pools: Any, summary: dict[str, Any]) -> None:
    records = run.metrics()
    for name, fig in (("rl_curve.png", curve(records, fixed)), ("lengths.png", lengths(records))):
        fig.savefig(run / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
    s = summary
    lines = [
        f"# RL: what to write into memory ({cfg.algorithm})",
        "",
        f"Base `{cfg.base}`; {cfg.iterations} iterations x {cfg.sessions} sessions x {cfg.group} self-edits "
        f"({s['episodes']} episodes, {s['rl_seconds']:.0f} s); inner loop LoRA r{cfg.inner.rank} "
        f"{cfg.inner.targets}, {cfg.inner.steps} steps at lr {cfg.inner.lr:g}; horizon {cfg.horizon}; "
        f"token cost {cfg.token_cost:g}. Held-out: {cfg.heldout} sessions "
        f"{'about people never seen in RL' if cfg.data is None else f'(the last of {cfg.data})'}, each "
        f"write averaged over {cfg.eval_seeds} adapter initialisations.",
        "",
        "| written into the LoRA | held-out recall | tokens |",
        "| --- | ---: | ---: |",
        f"| the model's notes before RL (greedy) | {s['heldout_before']:.3f} | {s['length_before']:.1f} |",
        f"| the policy's notes after RL (greedy) | {s['heldout_after']:.3f} | {s['length_after']:.1f} |",
        (
            f"| oracle notes, whole (upper bound) | {s['heldout_oracle']:.3f} | - |"
            if s["heldout_oracle"] is not None
            else "| oracle notes | - (sessions from a file carry no facts) | - |"
        ),
        f"| raw transcript, whole | {s['heldout_transcript']:.3f} | - |",
        f"| raw transcript, its first {cfg.max_new_tokens} tokens (same budget) | {s['heldout_transcript_head']:.3f} | "
        f"{cfg.max_new_tokens} |",
        "",
        f"Gain from RL: {s['gain_pt']:+.1f} points over its own notes (target >= +10); "
        f"{s['gain_equal_budget_pt']:+.1f} over the best write of the same budget that needs no learning.",
        "",
        "![reward and recall](rl_curve.png)",
        "",
        "![lengths](lengths.png)",
        "",
    ]
    if "speedup" in s:
        lines += [
            "## Inner-loop efficiency (same self-edits, same seeds, this run)",
            "",
            "| inner loop | episodes / min |",
            "| --- | ---: |",
            f"| one adapter at a time | {s['unbatched_episodes_per_min']:.1f} |",
            f"| {cfg.group} adapters batched | {s['batched_episodes_per_min']:.1f} |",
            "",
            f"Speed-up {s['speedup']:.2f}x.",
            "",
        ]
    lines += ["## What the policy writes (held-out sessions, greedy)", ""]
    for i, sess in enumerate(pools.heldout[:3]):
        lines += [
            f"**Session {i + 1}** ({len(sess.questions)} questions)",
            "",
            f"- before RL ({fixed['before']['lengths'][i]} tokens): {fixed['before']['texts'][i]}",
            f"- after RL ({last['lengths'][i]} tokens): {last['texts'][i]}",
            "",
        ]
    (run / "report.md").write_text("\n".join(lines))
