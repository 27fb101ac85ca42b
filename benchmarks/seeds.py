"""Run one continual config under several seeds and record each medium's mean and spread in docs/RESULTS.md.

One run of the loop ranks nothing finer than its seed spread (about +-0.04 ACC for a distilled LoRA: a
medium's query sampling, batch draws and the base-knowledge questions all follow the seed), so the issues'
targets are judged here on the mean over seeds.

    python -m benchmarks.seeds --config configs/archive/distill_seeds_replay.yaml --seeds 8 \
        --out runs/distill_seeds_replay

Seed i runs into OUT/seed{i}; a seed whose run already holds a summary is only read back (so an interrupted
benchmark resumes), one left half-way resumes from its last finished write.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.continual import (
    BASE_DROP,
    BYTES_RATIO,
    DISTILL_VS_CONTEXT,
    LORA_VS_CONTEXT,
    kind_accs,
    kind_table,
    run_config,
)
from benchmarks.results import write_section


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    """`mean +- sd (min..max)` of `xs` times `scale`."""
    xs = [x * scale for x in xs]
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{fmt}} +- {sd:{fmt}} ({min(xs):{fmt}}..{max(xs):{fmt}})"


def seeds_table(runs: list[dict]) -> tuple[str, list[str]]:
    """Per medium over the seeds: ACC, ACC / the best context medium of the same run, bytes against the
    KV cache, BWT and base drop (mean +- sd, range); and the issues' verdicts on the means."""
    lines = ["| medium | ACC | x best context | x fewer bytes than the KV cache | BWT | base drop (pt) "
             "| ACC per seed |",
             "| --- |" + " ---: |" * 6]  # fmt: skip
    verdicts, mean = [], statistics.mean
    best = [max(m["acc"] for m in r["media"].values() if m["kind"] == "context") for r in runs]
    for name in runs[0]["media"]:
        ms = [r["media"][name] for r in runs]
        ratio = [m["acc"] / b for m, b in zip(ms, best)]
        each = " ".join(f"{m['acc']:.3f}" for m in ms)
        kv = ms[0].get("bytes_ratio_vs_kv")  # the same on every seed: bytes follow the config
        drops = spread([m["base_acc_drop"] for m in ms], 100, ".1f")
        lines.append(f"| {name} | {spread([m['acc'] for m in ms])} | {spread(ratio, fmt='.2f')} | "
                     f"{f'{kv:.1f}' if kv else '-'} | {spread([m['bwt'] for m in ms])} | "
                     f"{drops} | {each} |")  # fmt: skip
        if ms[0]["kind"] != "lora":
            continue
        ok_bytes = min(m["bytes_ratio_vs_kv"] or 0 for m in ms) >= BYTES_RATIO
        drop = mean(m["base_acc_drop"] for m in ms)
        for target, label in ((LORA_VS_CONTEXT, "continual loop, LoRA with replay"),
                              (DISTILL_VS_CONTEXT, "distill with self_study")):  # fmt: skip
            ok = mean(ratio) >= target and ok_bytes and round(drop, 9) <= BASE_DROP
            verdicts.append(f"- {name} against {label}: mean ACC {mean(ratio):.2f} x the best context medium "
                            f"(target >= {target}), {ms[0]['bytes_ratio_vs_kv']:.1f}x fewer bytes per token than "
                            f"the KV cache (target >= {BYTES_RATIO}), mean base drop "
                            f"{drop * 100:+.1f} pt (target <= 5): "
                            f"{'met' if ok else 'not met'}")  # fmt: skip
    return "\n".join(lines), verdicts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/distill_storage_alone.yaml")
    p.add_argument("--base", default="runs/base")
    p.add_argument("--out", default="runs/distill_storage_alone")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1")
    p.add_argument("--set", action="append", default=[], help="override a config key")
    p.add_argument("--section", help="name of the RESULTS.md section (default: the config's file name)")
    args = p.parse_args()
    out = Path(args.out)
    runs = [run_config(args.config, out / f"seed{i}", [f"base={args.base}", f"seed={i}", *args.set])
            for i in range(args.seeds)]  # fmt: skip
    seconds = [float((out / f"seed{i}" / "seconds.txt").read_text()) for i in range(args.seeds)
               if (out / f"seed{i}" / "seconds.txt").exists()]  # fmt: skip
    table, verdicts = seeds_table(runs)
    body = (f"`{args.config}` on the base model `{args.base}` under seeds 0..{args.seeds - 1}, run into "
            f"`{out}/seedI`. Overrides: `{' '.join(args.set) or 'none'}`. Cells are mean +- sd over the seeds "
            f"(range in brackets); a run took {min(seconds, default=0):.0f}-{max(seconds, default=0):.0f} s."
            f"\n\n{table}\n\n" + "\n".join(verdicts))  # fmt: skip
    by_kind = [kind_accs({n: json.loads((out / f"seed{i}" / "media" / f"{n}.json").read_text())
                          for n in runs[i]["media"]}, args.base) for i in range(args.seeds)]  # fmt: skip
    counts = by_kind[0][0]
    means = {name: [statistics.mean(b[1][name][j] for b in by_kind) for j in range(len(counts))]
             for name in by_kind[0][1]}  # fmt: skip
    body += f"\n\nACC after the last write by kind of question, mean over the seeds:\n\n{kind_table(counts, means)}"
    write_section(args.section or Path(args.config).stem, f"Seed spread of the continual loop ({args.config})", body)


if __name__ == "__main__":
    main()
