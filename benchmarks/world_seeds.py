"""Is the testbed tuned to one world? Pretrain configs/pretrain.yaml on world seeds 0-3 (`world.seed` and
`seed` together) and record each against the base model's targets in docs/RESULTS.md.

    python -m benchmarks.world_seeds --out runs/worlds                  # seeds 0 1 2 3 into runs/worlds/seed{i}
    python -m benchmarks.world_seeds --out runs/worlds --reuse 0=runs/base   # seed 0 read from an existing run
    python -m benchmarks.world_seeds --out runs/worlds-2500 --set train.steps=2500 --section world_seeds_2500

A seed whose run holds a summary is only read back; one left half-way resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.pretrain_base import SECONDS, TARGETS
from benchmarks.results import pretrain_or_resume, write_section

DROP = 0.05  # held-out-template and session-reading accuracy within 5 points of world seed 0
ROWS = [
    "closed_book_acc",
    "open_book_acc",
    "heldout_template_acc",
    "session_icl_acc",
    "binding_acc",
    "seconds",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pretrain.yaml")
    ap.add_argument("--out", default="runs/worlds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--reuse", action="append", default=[], help="SEED=RUN_DIR: read that seed from a finished run")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="override for every seed")
    ap.add_argument("--section", default="world_seeds", help="name of the RESULTS.md section")
    args = ap.parse_args()

    reuse = {int(k): Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
    runs = {}
    for seed in args.seeds:
        out = reuse.get(seed, Path(args.out) / f"seed{seed}")
        runs[seed] = (
            out,
            pretrain_or_resume(args.config, [*args.overrides, f"world.seed={seed}", f"seed={seed}"], out),
        )
    ref = runs[min(runs)][1]
    lines = [
        "| world seed | run | " + " | ".join(ROWS) + " | targets |",
        "| --- | --- |" + " ---: |" * len(ROWS) + " --- |",
    ]
    for seed, (out, s) in runs.items():
        met = [s[k] >= v for k, v in TARGETS.items()] + [s["seconds"] <= SECONDS]
        met += [s[k] >= ref[k] - DROP for k in ("heldout_template_acc", "session_icl_acc")]
        cells = [f"{s[k]:.0f}" if k == "seconds" else f"{s[k]:.3f}" for k in ROWS]
        lines.append(f"| {seed} | `{out}` | " + " | ".join(cells) + f" | {'met' if all(met) else 'not met'} |")
    body = (
        f"`{args.config}`{''.join(f' --set {o}' for o in args.overrides)} with `world.seed` and `seed` set to "
        "each world seed. "
        f"Targets: closed-book >= {TARGETS['closed_book_acc']}, open-book >= {TARGETS['open_book_acc']}, within "
        f"{SECONDS // 60} minutes, held-out-template and session-reading accuracy within {DROP * 100:.0f} points "
        f"of world seed {min(runs)}. `seconds` is the training wall time as the run logged it.\n\n" + "\n".join(lines)
    )
    write_section(args.section, "The base model on four worlds", body)


if __name__ == "__main__":
    main()
