"""Catastrophic overtraining on the world (issue 31): `retain overtrain` run, resumed or read back, and its
report written to docs/RESULTS.md with the plots copied to docs/img/.

    python -m benchmarks.overtrain --out runs/overtrain
    python -m benchmarks.overtrain --out runs/overtrain-3 --set "tokens_per_param=[1, 3, 10]" --section overtrain_3
    python -m benchmarks.overtrain --out runs/overtrain-w32 --set 'tokens_per_param=[10, 30, 100, 300, 1000]' \
        --set 'pretrain_set=[train.eval_every=100000, model.width=32, model.layers=1]' --set samples=32 \
        --set 'write_set=[media.1.lr=5.0e-4]' --section overtrain_w32   # the paper's regime, ~30 min alone

Targets (issue 31): the loss change under perturbation monotone in pretraining tokens at fixed gamma over the
budgets tried; the base-knowledge drop after one write against the same budgets, with the correlation stated;
the study within 60 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from benchmarks.results import resumable, run_or_resume, write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/overtrain/world.yaml")
    ap.add_argument("--out", default="runs/overtrain")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--section", default="overtrain")
    args = ap.parse_args()

    from retain.overtrain.run import OvertrainConfig, overtrain

    out = Path(args.out)
    t0 = time.perf_counter()
    with resumable(out):
        s, cfg = run_or_resume(OvertrainConfig, overtrain, args.config, args.overrides, out)
    minutes = (time.perf_counter() - t0) / 60
    for name in ("overtrain", "linear"):
        shutil.copy(out / f"{name}.png", Path("docs/img") / f"{args.section}_{name}.png")
    report = (out / "report.md").read_text().split("\n", 2)[2]  # without its title
    report = report.replace("(overtrain.png)", f"(img/{args.section}_overtrain.png)").replace(
        "(linear.png)", f"(img/{args.section}_linear.png)")  # fmt: skip
    monotone = all(s["trends"]["monotone"].values())
    body = (f"Run directory `{out}`; this command took {minutes:.0f} min (0 when the run was read back; each "
            f"pretraining's own seconds are in its summary).\n\n{report}\n\nTargets:\n\n"
            f"- loss change monotone in pretraining tokens at every gamma > 0: {'met' if monotone else 'not met'}\n"
            "- base drop against pretraining tokens with the correlation stated: above\n")  # fmt: skip
    write_section(args.section, f"Catastrophic overtraining ({cfg.name})", body)


if __name__ == "__main__":
    main()
