"""HyenaDNA at CPU scale (docs/dna.md): `retain dna` on a config, run or read back, and its arms (the frozen model,
soft prompts of several lengths, fine-tuning) against the target in docs/RESULTS.md.

    python -m benchmarks.dna --out runs/dna-motif-128 --set genome.task_len=128 --set finetune_lr=1.0e-3

The same command resumes an interrupted run (pretraining after its last stage, finished arms read back).
`--from RUN` starts the arms on RUN's pretrained model instead of pretraining again, when the config given
pretrains exactly as RUN's did (only the arms' keys, such as labels, prompt_position or prompt_steps, differ):

    python -m benchmarks.dna --out runs/dna-rule-prefix-at --from runs/dna-rule-128-long \
        --set genome.task_len=128 --set finetune_lr=1.0e-3 --set genome.rule_rate=0.9 --set stage_steps=600 \
        --set labels=AT
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.results import RESULTS, resumable, write_section

TARGET = 0.9  # soft prompts reach >= 0.9 of fine-tuning's accuracy


PRETRAINING = ("genome", "model", "lengths", "stage_steps", "batch_size", "lr", "weight_decay", "seed")
"""The keys that decide the pretrained model (retain.dna.train.pretrain); the rest only shape the arms."""


def start_from(source: Path, cfg, out: Path) -> None:
    """A new run in `out` whose pretraining is `source`'s finished one: its checkpoints and stage records are
    copied, so `retain dna --resume` goes straight to the arms. Refused in one line when `cfg` would pretrain
    otherwise, or `source` has not finished pretraining."""
    from retain.config import load_config, to_dict
    from retain.dna.train import DNAConfig
    from retain.runs.checkpoint import latest_checkpoint
    from retain.runs.rundir import RunDir

    if not (source / "config.yaml").is_file():
        raise SystemExit(f"error: --from {source}: no run there (no config.yaml)")
    theirs, ours = to_dict(load_config(DNAConfig, source / "config.yaml")), to_dict(cfg)
    differ = [k for k in PRETRAINING if theirs[k] != ours[k]]
    if differ:
        raise SystemExit(f"error: --from {source}: it pretrained with other {', '.join(differ)}; give its values")
    ckpt = latest_checkpoint(source / "ckpt")
    if ckpt is None or int(ckpt.stem.split("-")[1]) != len(cfg.lengths):
        raise SystemExit(f"error: --from {source}: its pretraining has not finished (resume it first)")
    run = RunDir.create(cfg.name, out)
    shutil.copytree(source / "ckpt", run.ckpt_dir, dirs_exist_ok=True)
    shutil.copyfile(source / "metrics.jsonl", run / "metrics.jsonl")
    run.write_config(cfg)


def same_run(given, saved, out: Path) -> None:
    """Refuse in one line a command whose config differs from the run's own in more than where it computes,
    so that the command a RESULTS section records is the one that makes its run."""
    from retain.config import OPERATIONAL, flat, to_dict

    ours, theirs = flat(to_dict(given)), flat(to_dict(saved))
    differ = [k for k in theirs if k not in OPERATIONAL and ours.get(k) != theirs[k]]
    if differ:
        shown = ", ".join(f"{k}={theirs[k]!r}" for k in differ[:6])
        raise SystemExit(f"error: {out} was made with {shown}; give those with --set (or another --out)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/dna/hyenadna.yaml")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: dna_<task>_<task_len>)")
    ap.add_argument("--from", dest="source", default=None, help="a finished run whose pretrained model to reuse")
    args = ap.parse_args()

    from retain.config import load_config
    from retain.dna.train import DNAConfig, dna

    out = Path(args.out)
    given = load_config(DNAConfig, args.config, args.overrides)
    if args.source and not (out / "config.yaml").exists():
        start_from(Path(args.source), given, out)
    elif (out / "config.yaml").exists():  # resumed or read back: the command must say what the run is
        same_run(given, load_config(DNAConfig, out / "config.yaml"), out)
    if (out / "summary.json").exists():
        s = json.loads((out / "summary.json").read_text())
    else:
        resume = (out / "config.yaml").exists()
        with resumable(out):
            s = dna(DNAConfig() if resume else given, str(out), resume)
    cfg = load_config(DNAConfig, out / "config.yaml")
    section = args.section or f"dna_{cfg.genome.task}_{cfg.genome.task_len}"
    img = RESULTS.parent / "img" / f"{section}.png"
    shutil.copyfile(out / "accuracy.png", img)
    report = (out / "report.md").read_text().split("\n", 1)[1].strip()
    report = report.replace("](accuracy.png)", f"]({img.relative_to(RESULTS.parent)})")
    ratios = {k: v for k, v in s["prompt_vs_finetune"].items() if v is not None}
    best = max(ratios.values(), default=0.0)
    prompts = sorted((int(k.split("-")[1]), a["accuracy"]) for k, a in s["arms"].items() if k.startswith("prompt-"))
    rises = all(b[1] >= a[1] for a, b in zip(prompts, prompts[1:])) and prompts[-1][1] > prompts[0][1]
    met = "met" if best >= TARGET and rises else "not met"
    verdict = (f"Target: soft prompts rise with their length and reach >= {TARGET} of fine-tuning "
               f"({s['arms']['finetune']['accuracy']:.3f}): best {best:.2f}x, "
               f"{'rising' if rises else 'not rising'} with length: {met}.")  # fmt: skip
    if s["arms"]["finetune"]["accuracy"] < 0.6:  # chance is 0.5: no ratio to fine-tuning means anything
        verdict += " Fine-tuning itself did not learn the task, so the ratios compare chance with chance."
    write_section(section, f"HyenaDNA: {cfg.genome.task} task, {cfg.genome.task_len} nt", f"Run directory `{out}`.\n\n"
                  + report + "\n\n" + verdict)  # fmt: skip
    print(verdict)


if __name__ == "__main__":
    main()
