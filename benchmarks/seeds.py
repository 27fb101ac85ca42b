"""Run one continual config under several seeds and record each medium's mean and spread in docs/RESULTS.md.

One run of the loop ranks nothing finer than its seed spread (about +-0.04 ACC for a distilled LoRA: a
medium's query sampling, batch draws and the base-knowledge questions all follow the seed), so the issues'
targets are judged here on the mean over seeds.

    python -m benchmarks.seeds --config configs/distill_seeds_replay.yaml --seeds 8 --out runs/distill_seeds_replay

Seed i runs into OUT/seed{i}; a seed whose run already holds a summary is only read back (so an interrupted
benchmark resumes), one left half-way resumes from its last finished write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.continual import BASE_DROP, BYTES_RATIO, DISTILL_VS_CONTEXT, LORA_VS_CONTEXT, kind_accs
from benchmarks.results import write_section


def run_seed(config: str, base: str, seed: int, out: Path, overrides: list[str]) -> dict:
    """The summary of `config` run under `seed` into `out` (run now unless it is already there)."""
    if not (out / "summary.json").exists():
        from retain.config import load_config
        from retain.continual.loop import ContinualConfig, continual

        cfg = load_config(ContinualConfig, config, [f"base={base}", f"seed={seed}", *overrides])
        t0 = time.perf_counter()
        continual(cfg, str(out), resume=(out / "config.yaml").exists())
        (out / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return json.loads((out / "summary.json").read_text())


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    """`mean +- sd (min..max)` of `xs` times `scale`."""
    xs = [x * scale for x in xs]
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{fmt}} +- {sd:{fmt}} ({min(xs):{fmt}}..{max(xs):{fmt}})"


def seeds_table(runs: list[dict]) -> tuple[str, list[str]]:
    """Per medium over the seeds: ACC, ACC / the best context medium of the same run, BWT and base drop
    (mean +- sd, range); and the issues' verdicts on the means."""
    names = list(runs[0]["media"])
    lines = ["| medium | ACC | x best context | BWT | base drop (pt) | ACC per seed |", "| --- |" + " ---: |" * 5]
    verdicts = []
    for name in names:
        ms = [r["media"][name] for r in runs]
        best = [max(m["acc"] for m in r["media"].values() if m["kind"] == "context") for r in runs]
        ratio = [m["acc"] / b for m, b in zip(ms, best)]
        each = " ".join(f"{m['acc']:.3f}" for m in ms)
        lines.append(f"| {name} | {spread([m['acc'] for m in ms])} | {spread(ratio, fmt='.2f')} | "
                     f"{spread([m['bwt'] for m in ms])} | {spread([m['base_acc_drop'] for m in ms], 100, '.1f')} | "
                     f"{each} |")  # fmt: skip
        if ms[0]["kind"] != "lora":
            continue
        mean = statistics.mean
        ok_bytes = min(m["bytes_ratio_vs_kv"] or 0 for m in ms) >= BYTES_RATIO
        ok_base = mean(m["base_acc_drop"] for m in ms) <= BASE_DROP
        for target, label in ((LORA_VS_CONTEXT, "continual loop, LoRA with replay"),
                              (DISTILL_VS_CONTEXT, "distill with self_study")):  # fmt: skip
            ok = mean(ratio) >= target and ok_bytes and ok_base
            verdicts.append(f"- {name} against {label}: mean ACC {mean(ratio):.2f} x the best context medium "
                            f"(target >= {target}), {ms[0]['bytes_ratio_vs_kv']:.1f}x fewer bytes per token than "
                            f"the KV cache (target >= {BYTES_RATIO}), mean base drop "
                            f"{mean(m['base_acc_drop'] for m in ms) * 100:+.1f} pt (target <= 5): "
                            f"{'met' if ok else 'not met'}")  # fmt: skip
    return "\n".join(lines), verdicts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/distill_seeds_replay.yaml")
    p.add_argument("--base", default="runs/base")
    p.add_argument("--out", default="runs/distill_seeds_replay")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1")
    p.add_argument("--set", action="append", default=[], help="override a config key")
    args = p.parse_args()
    out = Path(args.out)
    runs = [run_seed(args.config, args.base, i, out / f"seed{i}", args.set) for i in range(args.seeds)]
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
    body += ("\n\nACC after the last write by kind of question, mean over the seeds:\n\n| medium | "
             + " | ".join(f"{k} ({c})" for k, c in counts.items()) + " |\n| --- |" + " ---: |" * len(counts))
    for name in by_kind[0][1]:
        body += f"\n| {name} | " + " | ".join(f"{statistics.mean(b[1][name][j] for b in by_kind):.3f}"
                                             for j in range(len(counts))) + " |"  # fmt: skip
    write_section(Path(args.config).stem, f"Seed spread of the continual loop ({args.config})", body)


if __name__ == "__main__":
    main()
