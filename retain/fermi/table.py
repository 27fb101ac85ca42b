"""Plain-text tables for `retain fermi`: one architecture in detail, or one row per preset."""

from __future__ import annotations

from typing import Any


def human_bytes(n: float) -> str:
    """Decimal units (kB = 1e3 B), three significant digits."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g} B"


def human_count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def per_token(x: float) -> str:
    return f"{x:,.1f}" if x >= 100 else f"{x:.4g}"


def render(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to width; first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, ["-" * w for w in widths], *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_estimate(est: dict[str, Any], cfg: Any) -> str:
    """The detailed table for one architecture, then its assumptions."""
    kv = est["kv_bytes_per_token"]

    def ratio(bpt: float) -> str:
        r = kv / bpt if bpt < kv else bpt / kv
        return (f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x") + (" fewer" if bpt < kv else " more")

    rows = [
        [f"KV cache ({cfg.kv_dtype})", "-", human_bytes(est["kv_cache_bytes"]), per_token(kv), "1x"],
        [
            f"LoRA r={est['lora_rank']} {cfg.targets} ({cfg.adapter_dtype})",
            human_count(est["lora_params"]),
            human_bytes(est["lora_bytes"]),
            per_token(est["lora_bytes_per_token"]),
            ratio(est["lora_bytes_per_token"]),
        ],
        [
            f"soft prompt P={cfg.prefix_tokens}",
            human_count(est["soft_prompt_params"]),
            human_bytes(est["soft_prompt_bytes"]),
            per_token(est["soft_prompt_bytes_per_token"]),
            ratio(est["soft_prompt_bytes_per_token"]),
        ],
        [
            f"KV prefix P={cfg.prefix_tokens}",
            human_count(est["kv_prefix_params"]),
            human_bytes(est["kv_prefix_bytes"]),
            per_token(est["kv_prefix_bytes_per_token"]),
            ratio(est["kv_prefix_bytes_per_token"]),
        ],
        [
            f"full fine-tuning ({cfg.weight_dtype})",
            human_count(est["full_params"]),
            human_bytes(est["full_bytes"]),
            per_token(est["full_bytes_per_token"]),
            ratio(est["full_bytes_per_token"]),
        ],
    ]
    if est["pretrain_bytes_per_token"] is not None:
        rows.append(
            [
                f"pretraining ({human_count(est['pretrain_tokens'])} tokens)",
                human_count(est["params"]),
                human_bytes(est["full_bytes"]),
                f"{est['pretrain_bytes_per_token']:.4g}",
                "per pretraining token",
            ]
        )
    title = f"{est['model']} ({est['attention']}, {human_count(est['params'])} params) at {est['tokens']:,} tokens"
    table = render(["medium", "params", "bytes", "bytes/token", "vs KV cache"], rows)
    notes = "\n".join(f"- {a}" for a in est["assumptions"])
    return f"{title}\n\n{table}\n\nassumptions:\n{notes}"


def format_presets(rows: list[dict[str, Any]], cfg: Any) -> str:
    """One row per preset: params, KV and LoRA bytes per token, their ratio, pretraining bytes per token."""
    body = []
    for est in rows:
        pre = est["pretrain_bytes_per_token"]
        body.append(
            [
                est["model"],
                est["attention"],
                human_count(est["params"]),
                human_count(est["pretrain_tokens"]) if est["pretrain_tokens"] else "n/p",
                per_token(est["kv_bytes_per_token"]),
                per_token(est["lora_bytes_per_token"]),
                f"{est['kv_over_lora']:.1f}",
                f"{pre:.3g}" if pre is not None else "n/p",
            ]
        )
    header = ["model", "attn", "params", "pretrain tok", "KV B/tok", f"LoRA r{cfg.rank} B/tok", "KV/LoRA",
              "pretrain B/tok"]  # fmt: skip
    notes = (
        f"LoRA rank {cfg.rank} on {cfg.targets} in {cfg.adapter_dtype}, held over {cfg.tokens:,} tokens; KV cache in "
        f"{cfg.kv_dtype}; weights in {cfg.weight_dtype}; n/p = not published."
    )
    return f"{render(header, body)}\n\n{notes}"
