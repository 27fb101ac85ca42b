"""The two Fermi figures: bytes/token against tokens held (fixed rank), and against LoRA rank (fixed tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from retain.fermi import formulas as F
from retain.fermi.arch import Arch
from retain.runs.rundir import RunDir


def plot_vs_tokens(arch: Arch, cfg: Any) -> plt.Figure:
    """Log-log bytes per token against tokens held: KV cache, LoRA at several ranks, full weights, pretraining."""
    max_tokens = max(1e13, (arch.pretrain_tokens or 0) * 3)
    tokens = np.logspace(2, np.log10(max_tokens), 200)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    kv = F.kv_bytes_per_token(arch, cfg.kv_dtype)
    ax.plot(tokens, np.full_like(tokens, kv), lw=2.2, color="black", label=f"KV cache ({cfg.kv_dtype})")
    for rank in cfg.plot_ranks:
        b = F.lora_bytes(arch, rank, cfg.targets, cfg.adapter_dtype)
        ax.plot(tokens, b / tokens, lw=1.6, label=f"LoRA r={rank} ({cfg.targets})")
    full = arch.param_count() * F.dtype_bytes(cfg.weight_dtype)
    ax.plot(tokens, full / tokens, lw=1.6, ls="--", color="gray", label=f"all weights ({cfg.weight_dtype})")
    pre = F.pretrain_bytes_per_token(arch, cfg.weight_dtype)
    if pre is not None:
        ax.scatter([arch.pretrain_tokens], [pre], marker="*", s=180, color="crimson", zorder=5,
                   label=f"pretraining: {pre:.3g} B/token at {arch.pretrain_tokens:.3g} tokens")  # fmt: skip
    ax.axvline(cfg.tokens, color="gray", lw=0.8, ls=":")
    lora_here = F.lora_bytes(arch, cfg.rank, cfg.targets, cfg.adapter_dtype) / cfg.tokens
    ax.annotate(
        f"{cfg.tokens:,} tokens: KV/LoRA r={cfg.rank} = {kv / lora_here:.1f}x",
        xy=(cfg.tokens, lora_here), xytext=(tokens[0] * 1.5, lora_here / 3e4),
        arrowprops={"arrowstyle": "->", "color": "gray"}, fontsize=9,
    )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens held in memory")
    ax.set_ylabel("bytes per token")
    ax.set_title(f"{arch.name}: bytes per token of each memory medium")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_vs_rank(arch: Arch, cfg: Any) -> plt.Figure:
    """Bytes per token against LoRA rank at `cfg.tokens`, for each target set, with the KV cache for scale."""
    ranks = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    fig, ax = plt.subplots(figsize=(7.5, 5))
    kv = F.kv_bytes_per_token(arch, cfg.kv_dtype)
    ax.plot(ranks, np.full(len(ranks), kv), lw=2.2, color="black", label=f"KV cache ({cfg.kv_dtype})")
    for targets in ("qv", "attn", "all-linear"):
        bpt = [F.lora_bytes(arch, int(r), targets, cfg.adapter_dtype) / cfg.tokens for r in ranks]
        ax.plot(ranks, bpt, marker="o", ms=3.5, lw=1.6, label=f"LoRA {targets}")
    ax.axvline(cfg.rank, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("LoRA rank")
    ax.set_ylabel("bytes per token")
    ax.set_title(f"{arch.name}: bytes per token vs LoRA rank at {cfg.tokens:,} tokens")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_all(arch: Arch, cfg: Any, out_dir: str | Path) -> list[Path]:
    """Write `bytes_vs_tokens.png` and `bytes_vs_rank.png` into `out_dir`."""
    run = RunDir(out_dir)
    return [
        run.savefig(plot_vs_tokens(arch, cfg), "bytes_vs_tokens.png"),
        run.savefig(plot_vs_rank(arch, cfg), "bytes_vs_rank.png"),
    ]
