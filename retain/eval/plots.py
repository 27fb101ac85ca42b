"""Plots that read run records (metrics.jsonl rows, summaries). Each returns a matplotlib figure."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def curves(records: list[dict[str, Any]], x: str, ys: dict[str, str], title: str, ylabel: str,
           logy: bool = False, ylim: tuple[float, float] | None = None) -> plt.Figure:  # fmt: skip
    """One line per metric key in `ys` ({key: label}) against `x`, from records that have both."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label in ys.items():
        pts = [(r[x], r[key]) for r in records if key in r and x in r and r[key] == r[key]]
        if pts:
            xs, vs = zip(*pts)
            ax.plot(xs, vs, marker="o" if len(pts) < 30 else None, ms=3, lw=1.5, label=label)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig
