"""report.md and plots of a continual run: a table per medium, accuracy-matrix heatmaps, recall against
bytes per token, base knowledge over sessions, learning curves."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from retain.config import to_yaml
from retain.eval import continual as CL
from retain.runs.rundir import RunDir


def heatmaps(results: dict[str, dict]) -> plt.Figure:
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for k, (ax, (name, r)) in enumerate(zip(axes[0], results.items())):
        im = ax.imshow(r["R"], vmin=0, vmax=1, cmap="viridis")
        ticks = list(range(len(r["R"])))
        ax.set(
            title=f"{name}\nACC {r['acc']:.2f}  BWT {r['bwt']:+.2f}",
            xlabel="questions of session j",
            xticks=ticks,
            xticklabels=[t + 1 for t in ticks],
            yticks=ticks,
            yticklabels=[t + 1 for t in ticks],
        )
        if k == 0:
            ax.set_ylabel("after writing session i")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="R[i][j]")
    return fig


def recall_vs_bytes(results: dict[str, dict]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, r in results.items():
        if r["bytes_per_token"] > 0:
            ax.scatter(r["bytes_per_token"], r["acc"], s=40)
            ax.annotate(name, (r["bytes_per_token"], r["acc"]), textcoords="offset points", xytext=(4, 4))
    ax.set(xscale="log", xlabel="memory bytes per session token (log)", ylabel="ACC (recall after all sessions)",
           ylim=(0, 1.02), title="Recall against memory size")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    return fig


def curves(results: dict[str, dict], key: str, title: str, ylabel: str, from_zero: bool) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, r in results.items():
        ys = r[key] if key in r else CL.learning_curve(r["R"])
        xs = range(0 if from_zero else 1, len(ys) + (0 if from_zero else 1))
        ax.plot(list(xs), ys, marker="o", label=name)
    ax.set(xlabel="sessions written", ylabel=ylabel, title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def liti_front(results: dict[str, dict]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    top = max((p["acc"] for r in results.values() for p in r.get("liti") or []), default=1.0)
    for name, r in results.items():
        pts = r.get("liti") or []
        if pts:
            ax.plot([p["base_acc"] for p in pts], [p["acc"] for p in pts], marker="o", label=name)
            for p in pts:
                ax.annotate(f"{p['eta']:g}", (p["base_acc"], p["acc"]), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)  # fmt: skip
    ax.set(xlabel="base knowledge (closed-book recall, known people)", ylabel="ACC (recall, all sessions)",
           title="LiTI: theta_init + eta (theta - theta_init), eta labelled", xlim=(0, 1.02),
           ylim=(0, min(1.02, 1.25 * top + 0.02)))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def liti_table(results: dict[str, dict]) -> str:
    """Markdown rows eta -> ACC / base acc per medium that has a LiTI front ('' when none has)."""
    fronts = {n: r["liti"] for n, r in results.items() if r.get("liti")}
    if not fronts:
        return ""
    etas = [p["eta"] for p in next(iter(fronts.values()))]
    lines = ["| medium | " + " | ".join(f"eta {e:g}" for e in etas) + " |", "| --- |" + " ---: |" * len(etas)]
    for name, pts in fronts.items():
        lines.append(f"| {name} | " + " | ".join(f"{p['acc']:.3f} / {p['base_acc']:.2f}" for p in pts) + " |")
    return "\n".join(lines)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def write_report(run: RunDir, cfg: Any, results: dict[str, dict], summary: dict[str, Any]) -> None:
    run.savefig(heatmaps(results), "accuracy_matrix.png")
    run.savefig(recall_vs_bytes(results), "recall_vs_bytes.png")
    run.savefig(curves(results, "base_curve", "Base knowledge over sessions", "closed-book accuracy on base questions",
                       True), "base_knowledge.png")  # fmt: skip
    run.savefig(curves(results, "learning", "Learning curve", "mean recall on the sessions so far", False),
                "learning_curve.png")  # fmt: skip
    front = liti_table(results)
    if front:
        run.savefig(liti_front(results), "liti_front.png")
        front = ("## LiTI: recall against base knowledge\n\nThe final memory moved towards the base model, "
                 "theta_init + eta (theta - theta_init); each cell is ACC / base-knowledge accuracy.\n\n"
                 f"{front}\n\n![LiTI front](liti_front.png)\n")  # fmt: skip
    text = summary.get("grading") == "text"
    head = (
        "| medium | " + ("EM | F1 |" if text else "ACC |") + " just written | BWT | FWT | base acc | base drop | "
        "skill acc | ppl drift | bytes | B/token | x fewer than KV cache | bits/param | write s | answer s |"
    )
    lines = [head, "| --- |" + " ---: |" * (15 if text else 14)]
    for name, m in summary["media"].items():
        f1 = f" {_f(m.get('acc_f1'), '.3f')} |" if text else ""
        drift = None if m.get("ppl_drift") is None else m["ppl_drift"] * 100
        lines.append(
            f"| {name} | {m['acc']:.3f} |{f1} {m['just_written']:.3f} | {m['bwt']:+.3f} | {_f(m['fwt'], '+.3f')} | "
            f"{m['base_acc']:.3f} | {m['base_acc_drop'] * 100:+.1f} pt | {_f(m['skill_acc'], '.3f')} | "
            f"{_f(drift, '+.1f')}{'%' if drift is not None else ''} | {m['nbytes']:,} | "
            f"{m['bytes_per_token']:.1f} | {_f(m.get('bytes_ratio_vs_kv'), '.1f')} | "
            f"{_f(m['bits_per_param'], '.4f')} | {m['write_seconds']:.1f} | {m['answer_seconds']:.1f} |")  # fmt: skip
    notes = "".join(f"- {n}\n" for n in summary.get("notes", []))
    notes = f"\nLeft out of this run:\n\n{notes}" if notes else ""
    matrices = []
    for name, r in results.items():
        rows = "\n".join(f"| {i + 1} | " + " | ".join(f"{x:.2f}" for x in row) + " |" for i, row in enumerate(r["R"]))
        n = len(r["R"])
        matrices.append(f"### {name}\n\n| after \\ session | " + " | ".join(str(j + 1) for j in range(n)) + " |\n"
                        + "| --- |" + " ---: |" * n + "\n| before | " + " | ".join(f"{x:.2f}" for x in r["R0"])
                        + " |\n" + rows)  # fmt: skip
    text = f"""# Continual run: {run.path.name}

Writer: `{cfg.writer.kind}`; {len(next(iter(results.values()))["R"])} sessions from {cfg.data or "the world"}; base
model `{cfg.base}`. {"EM (SQuAD-normalised exact match) and F1 (token F1) are" if text else "ACC is"} the mean over all
sessions after the last write; "just written" the mean of R[i][i]; BWT, FWT and forgetting follow Avalanche;
base drop is closed-book accuracy on {
        "the general questions the base model answered right" if text else "known people"
    } before minus after (points){"; ppl drift is the change of perplexity on held-out text" if text else ""};
bytes per token divide the memory's bytes by the sessions' transcript tokens.
{notes}
{chr(10).join(lines)}

![accuracy matrices](accuracy_matrix.png)

![recall vs bytes](recall_vs_bytes.png)

![base knowledge](base_knowledge.png)

![learning curve](learning_curve.png)

{front}
## Accuracy matrices R[i][j]

{chr(10).join(matrices)}

## Config

```yaml
{to_yaml(cfg)}```
"""
    run.write_report(text)
