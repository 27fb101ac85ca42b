"""Is the testbed tuned to one world? Pretrain configs/pretrain.yaml on world seeds 0-3 (`world.seed` and
`seed` together) and record each against the base model's targets in docs/RESULTS.md.

    python -m benchmarks.world_seeds --out runs/worlds                  # seeds 0 1 2 3 into runs/worlds/seed{i}
    python -m benchmarks.world_seeds --out runs/worlds --reuse 0=runs/base   # seed 0 read from an existing run
    python -m benchmarks.world_seeds --out runs/worlds-2500 --set train.steps=2500 --section world_seeds_2500
    python -m benchmarks.world_seeds --out runs/world0-seeds --world 0 --seeds 0 1 2 3   # training seeds

A seed whose run holds a summary is only read back; one left half-way resumes. A second table asks each base the
whole open-book suite again (every fresh person, every attribute) and splits its recall by attribute, with the
share of wrong answers that are another value its context states: where a world's reading fails. A third splits
the held-out-template suite the same way: each attribute has one held-out question form (two with
`world.question_forms=10`), so this accuracy moves in steps of about a seventh as single forms generalise or not.
`--world N` holds the world at seed N and varies the training seed alone: the spread a world-seed comparison has
to be read against.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.pretrain_base import SECONDS, TARGETS
from benchmarks.results import pretrain_or_resume, write_section
from retain.config import read_yaml
from retain.world import templates as T

DROP = 0.05  # held-out-template and session-reading accuracy within 5 points of world seed 0
ROWS = [
    "closed_book_acc",
    "open_book_acc",
    "heldout_template_acc",
    "session_icl_acc",
    "binding_acc",
    "seconds",
]


def missed(s: dict, ref: dict) -> str:
    """The targets run summary `s` misses, against the reference world's summary `ref`."""
    out = [
        name for name, k in (("closed-book", "closed_book_acc"), ("open-book", "open_book_acc")) if s[k] < TARGETS[k]
    ]
    out += ["time"] if s["seconds"] > SECONDS else []
    for name, k in (("held-out templates", "heldout_template_acc"), ("session reading", "session_icl_acc")):
        n, n_ref = s[k.replace("_acc", "/n")], ref[k.replace("_acc", "/n")]
        se = (s[k] * (1 - s[k]) / n + ref[k] * (1 - ref[k]) / n_ref) ** 0.5
        if s[k] < ref[k] - DROP:
            out.append(f"{name} -{(ref[k] - s[k]) * 100:.1f} pt (SE {se * 100:.1f})")
    return ", ".join(out)


def attribute_tables(runs: dict[int, tuple[Path, dict]], suites: list[str]) -> dict[str, dict[int, dict]]:
    """Recall per attribute of each run's base on each whole suite of `suites` (final-evaluation draw), by suite
    and run; each base is loaded once."""
    from retain.eval.suites import base_suites, by_attribute
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    tables: dict[str, dict[int, dict]] = {suite: {} for suite in suites}
    for seed, (out, _) in runs.items():
        model, tok = load_model_and_tokenizer(out / "model")
        cfg_seed = read_yaml(out / "config.yaml")["seed"]
        items = base_suites(load_world(out / "world"), seed=cfg_seed + 1)
        for suite in suites:
            tables[suite][seed] = by_attribute(model.eval(), tok, items[suite])
    return tables


def attribute_rows(table: dict[int, dict], label: str) -> list[str]:
    """A table of `attribute_tables`, one row per run, with the share of wrong answers another context value."""
    attrs = sorted({a for t in table.values() for a in t})
    lines = [
        f"| {label} | " + " | ".join(attrs) + " | wrong answers stating another value of the context |",
        "| --- |" + " ---: |" * (len(attrs) + 1),
    ]
    for seed, t in table.items():
        wrong = sum(v["n"] * (1 - v["acc"]) for v in t.values())
        misread = sum(v["n"] * (1 - v["acc"]) * v["wrong_in_context"] for v in t.values())
        cells = [f"{t[a]['acc']:.2f}" for a in attrs]
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {misread / max(wrong, 1):.2f} of {wrong:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pretrain.yaml")
    ap.add_argument("--out", default="runs/worlds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--reuse", action="append", default=[], help="SEED=RUN_DIR: read that seed from a finished run")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="override for every seed")
    ap.add_argument("--section", default="world_seeds", help="name of the RESULTS.md section")
    ap.add_argument("--world", type=int, default=None, help="hold world.seed here and vary only the training seed")
    args = ap.parse_args()
    label = "world seed" if args.world is None else f"training seed (world {args.world})"

    reuse = {int(k): Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
    runs = {}
    for seed in args.seeds:
        out = reuse.get(seed, Path(args.out) / f"seed{seed}")
        world = seed if args.world is None else args.world
        overrides = [*args.overrides, f"world.seed={world}", f"seed={seed}"]
        runs[seed] = (out, pretrain_or_resume(args.config, overrides, out))
    ref = runs[min(runs)][1]
    lines = [
        f"| {label} | run | " + " | ".join(ROWS) + " | targets |",
        "| --- | --- |" + " ---: |" * len(ROWS) + " --- |",
    ]
    for seed, (out, s) in runs.items():
        cells = [f"{s[k]:.0f}" if k == "seconds" else f"{s[k]:.3f}" for k in ROWS]
        lines.append(f"| {seed} | `{out}` | " + " | ".join(cells) + f" | {missed(s, ref) or 'met'} |")
    spreads = []
    for name, k in (("held-out templates", "heldout_template_acc"), ("session reading", "session_icl_acc")):
        v = [s[k] for _, s in runs.values()]
        if len(v) > 1:
            spreads.append(f"{name} {min(v):.3f}-{max(v):.3f} (SD {statistics.stdev(v):.3f})")
    spread = "; ".join(spreads)
    if args.world is None:
        varied = "`world.seed` and `seed` set to each world seed"
    else:
        varied = f"`world.seed={args.world}` and `seed` set to each training seed"
    tables = attribute_tables(runs, ["open_book", "heldout_template"])
    forms = read_yaml(runs[min(runs)][0] / "world" / "config.yaml").get("question_forms", 4)
    heldout_forms = len(T.split(T.phrasings(forms).question["field"], heldout=True))
    body = (
        f"`{args.config}`{''.join(f' --set {o}' for o in args.overrides)} with {varied}. "
        f"Targets: closed-book >= {TARGETS['closed_book_acc']}, open-book >= {TARGETS['open_book_acc']}, within "
        f"{SECONDS // 60} minutes, held-out-template and session-reading accuracy within {DROP * 100:.0f} points "
        f"of {label} {min(runs)}; a fall names, in brackets, one standard error of the difference of the two "
        "accuracies from the suites' sizes alone (the evaluation's sampling noise, not the training run's). "
        "`seconds` is the training wall time as the run logged it.\n\n"
        + "\n".join(lines)
        + (f"\n\nSpread over the rows: {spread}." if spread else "")
        + "\n\nOpen-book recall by attribute, each base asked its whole open-book suite (every fresh person, every "
        "attribute, the final evaluation's draw), and the share of its wrong answers that are another value its "
        "context states:\n\n"
        + "\n".join(attribute_rows(tables["open_book"], label))
        + f"\n\nHeld-out-template recall by attribute ({heldout_forms} held-out question form(s) each, the whole "
        "suite):\n\n" + "\n".join(attribute_rows(tables["heldout_template"], label))
    )
    title = (
        f"World {args.world}, several training seeds"
        if args.world is not None
        else f"The base model on {len(runs)} worlds"
    )
    write_section(args.section, title, body)


if __name__ == "__main__":
    main()
