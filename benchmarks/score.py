"""SCoRe against naive multi-turn RL and no training (`retain score`): run a config (or read a finished run
back) and record the held-out self-correction metrics per arm and seed against the targets in docs/RESULTS.md.

    python -m benchmarks.score --out runs/score
    python -m benchmarks.score --out runs/score-bio --set memory=bio --set name=score-bio --section score_bio

An interrupted run resumes where it stopped (the same command). The plot is copied to docs/img/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.results import run_or_resume, write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/score/world.yaml")
    ap.add_argument("--out", default="runs/score")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--section", default="score")
    args = ap.parse_args()

    from retain.rl.score_run import ScoreConfig, score

    out = Path(args.out)
    s, cfg = run_or_resume(ScoreConfig, score, args.config, args.overrides, out)
    shutil.copy(out / "attempts.png", Path("docs/img") / f"{args.section}_attempts.png")
    lines = ["| arm | seed | Acc@t1 | Acc@t2 | delta | i->c | c->i | attempt 2 = attempt 1 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for arm, m in s["arms"].items():
        for r in m["seeds"] + ([m] if len(m["seeds"]) > 1 else []):
            seed = r.get("seed", "mean")
            lines.append(f"| {arm} | {seed} | {r['acc_t1']:.3f} | {r['acc_t2']:.3f} | {r['delta']:+.3f} | "
                         f"{r['i_to_c']:.3f} | {r['c_to_i']:.3f} | {r['same']:.2f} |")  # fmt: skip
    verdicts = []
    if "score_met" in s:
        verdicts.append(f"- SCoRe: delta > 0 with c->i <= half of i->c on every seed (>= 2): "
                        f"{'met' if s['score_met'] else 'not met'}")  # fmt: skip
    if "naive_fails" in s:
        verdicts.append(f"- naive multi-turn RL: delta <= 0 or attempt 2 repeats attempt 1 in >= 90% on every seed: "
                        f"{'yes' if s['naive_fails'] else 'no'}")  # fmt: skip
    iters = f"Stage I {cfg.stage1} + Stage II {cfg.stage2} iterations x {cfg.rounds} (naive: all Stage II)"
    body = (f"`{args.config}` on `{cfg.base}`: people `{cfg.people}`, memory for attempt 2 `{cfg.memory}`, "
            f"templates `{cfg.templates}`, {iters}, {cfg.questions} questions x {cfg.group} samples per iteration, "
            f"lr {cfg.lr}, alpha {cfg.alpha}, beta1 {cfg.beta1}, beta2 {cfg.kl_first}. Held-out people's questions "
            f"({cfg.eval_n} at most), greedy. Run directory `{out}`.\n\n" + "\n".join(lines)
            + "\n\nTargets:\n\n" + "\n".join(verdicts)
            + f"\n\n![attempts over iterations](img/{args.section}_attempts.png)")  # fmt: skip
    write_section(args.section, f"SCoRe: self-correction in two attempts ({args.section})", body)


if __name__ == "__main__":
    main()
