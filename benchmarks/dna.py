"""HyenaDNA at CPU scale (docs/dna.md): `retain dna` on a config, run or read back, and its arms (the frozen model,
soft prompts of several lengths, fine-tuning) against the target in docs/RESULTS.md.

    python -m benchmarks.dna --out runs/dna-motif-128 --set genome.task_len=128 --set finetune_lr=1.0e-3

The same command resumes an interrupted run (pretraining after its last stage, finished arms read back).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.results import RESULTS, resumable, write_section

TARGET = 0.9  # soft prompts reach >= 0.9 of fine-tuning's accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/dna/hyenadna.yaml")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: dna_<task>_<task_len>)")
    args = ap.parse_args()

    from retain.config import load_config
    from retain.dna.train import DNAConfig, dna

    out = Path(args.out)
    if (out / "summary.json").exists():
        s = json.loads((out / "summary.json").read_text())
    else:
        resume = (out / "config.yaml").exists()
        with resumable(out):
            s = dna(DNAConfig() if resume else load_config(DNAConfig, args.config, args.overrides), str(out), resume)
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
