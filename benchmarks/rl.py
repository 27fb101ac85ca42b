"""Benchmark of the outer loop: `retain rl` on configs/rl.yaml, then its numbers into docs/RESULTS.md.

    python -m benchmarks.rl                                   # configs/rl.yaml into runs/rl
    python -m benchmarks.rl --set algorithm=pg --out runs/rl_pg --section rl_pg

Targets (issue): held-out recall after RL >= 10 points above the same model's self-edits before RL, within
30 minutes of RL on 2 CPU cores; batched inner loop against one adapter at a time, same run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.results import RESULTS, write_section
from retain.config import apply_override, from_dict, read_yaml
from retain.rl.run import RLConfig, rl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/rl.yaml")
    ap.add_argument("--out", default="runs/rl")
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    ap.add_argument("--section", default="rl", help="name of the RESULTS.md section")
    ap.add_argument("--fresh", action="store_true", help="delete --out first (default: resume it if present)")
    args = ap.parse_args()
    data = read_yaml(args.config)
    for o in args.overrides:
        apply_override(data, o)
    cfg = from_dict(RLConfig, data)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    s = rl(cfg, str(out), resume=(out / "config.yaml").exists())
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    rows = [
        "| written into the LoRA | held-out recall | tokens |",
        "| --- | ---: | ---: |",
        f"| model's own notes before RL (greedy) | {s['heldout_before']:.3f} | {s['length_before']:.1f} |",
        f"| policy's notes after RL (greedy) | {s['heldout_after']:.3f} | {s['length_after']:.1f} |",
        f"| oracle notes, whole (upper bound) | {s['heldout_oracle']:.3f} | - |",
        f"| raw transcript, whole | {s['heldout_transcript']:.3f} | - |",
        f"| raw transcript, first {cfg.max_new_tokens} tokens (same budget) | {s['heldout_transcript_head']:.3f} | "
        f"{cfg.max_new_tokens} |",
    ]
    eff = ""
    if "speedup" in s:
        eff = (f"\n\nInner loop, same self-edits and seeds, this run: {s['batched_episodes_per_min']:.1f} episodes/min "
               f"with {cfg.group} adapters batched vs {s['unbatched_episodes_per_min']:.1f} one at a time "
               f"({s['speedup']:.2f}x).")  # fmt: skip
    body = (f"`{args.config}` ({cfg.algorithm}, {cfg.iterations} iterations x {cfg.sessions} sessions x "
            f"{cfg.group} self-edits = {s['episodes']} episodes; inner LoRA r{cfg.inner.rank} {cfg.inner.targets}, "
            f"{cfg.inner.steps} steps) on `{cfg.base}`, run into `{out}` (report: `{out}/report.md`, plots "
            f"`rl_curve.png`, `lengths.png`). Overrides: {' '.join(args.overrides) or 'none'}. Held-out: "
            f"{cfg.heldout} sessions about people never seen in RL, {cfg.eval_seeds} adapter seeds each. Self-edits "
            f"sampled at {cfg.decoding.label()}; reward {cfg.reward}"
            f"{f', ReST-EM keeping {cfg.keep}' if cfg.algorithm == 'rest_em' else ''}.\n\n"
            + "\n".join(rows) + eff + "\n\n"
            f"- RL time {s['rl_seconds']:.0f} s (target <= 1800 s): {met(s['rl_seconds'] <= 1800)}\n"
            f"- held-out gain {s['gain_pt']:+.1f} pt (target >= +10): {met(s['gain_pt'] >= 10)}; over the best "
            f"equal-budget write that needs no learning (own notes or the transcript's first {cfg.max_new_tokens} "
            f"tokens): {s['gain_equal_budget_pt']:+.1f} pt")  # fmt: skip
    body += "\n\n" + " ".join(f"![{alt}](img/{name})" for alt, name in publish_plots(out, args.section))
    write_section(args.section, f"RL outer loop ({args.config}, {cfg.algorithm})", body)


def publish_plots(run: Path, section: str) -> list[tuple[str, str]]:
    """Copy the run's plots next to RESULTS.md (docs/img/<section>_*.png), since runs/ is not committed."""
    img = RESULTS.parent / "img"
    img.mkdir(exist_ok=True)
    out = []
    for plot, alt in (("rl_curve.png", "reward and held-out recall over RL iterations"),
                      ("lengths.png", "self-edit lengths")):  # fmt: skip
        if (run / plot).exists():
            shutil.copyfile(run / plot, img / f"{section}_{plot}")
            out.append((alt, f"{section}_{plot}"))
    return out


if __name__ == "__main__":
    main()
