"""Pretrain the default base model and record its numbers against the issue's targets in docs/RESULTS.md.

    python -m benchmarks.pretrain_base --out runs/base            # trains (or resumes) configs/pretrain.yaml
    python -m benchmarks.pretrain_base --out runs/base --config configs/pretrain.yaml
    python -m benchmarks.pretrain_base --out runs/base --section pretrain_base_repro   # a second machine's run
    python -m benchmarks.pretrain_base --out runs/base-w16 --set model.first_layer_window=16 --section NAME

A run directory that already holds a summary is only read, so the section can be rewritten without
training again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.results import pretrain_or_resume, write_section

# The targets of the base model on 2 CPU cores (issue 4).
TARGETS = {"closed_book_acc": 0.95, "open_book_acc": 0.90}
SECONDS = 600
ROWS = ["closed_book_acc", "closed_book_acc_qa_split", "closed_book_acc_bio_split", "closed_book_heldout_q_acc",
        "open_book_acc", "heldout_template_acc", "binding_acc", "session_icl_acc", "session_stream_acc"]  # fmt: skip


def table(s: dict) -> str:
    lines = ["| metric | value | target |", "| --- | --- | --- |"]
    for k in ROWS:
        target = f">= {TARGETS[k]}" if k in TARGETS else ""
        value = f"{s[k]:.3f}" if k in s else "-"  # runs from before a suite existed lack its key
        lines.append(f"| `{k}` | {value} | {target} |")
    lines.append(f"| `seconds` | {s['seconds']:.0f} | <= {SECONDS} |")
    lines.append(f"| `params` | {s['params']:,} | |")
    lines.append(f"| `tokens_seen` | {s['tokens_seen']:,} | |")
    met = all(s[k] >= v for k, v in TARGETS.items()) and s["seconds"] <= SECONDS
    return "\n".join(lines) + f"\n\nTargets met: **{'yes' if met else 'no'}**."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/pretrain.yaml")
    p.add_argument("--out", default="runs/base")
    p.add_argument("--set", action="append", default=[], dest="overrides", help="override a config key")
    p.add_argument("--section", default="pretrain_base", help="name of the RESULTS.md section")
    args = p.parse_args()
    out = Path(args.out)
    s = pretrain_or_resume(args.config, args.overrides, out)
    sets = "".join(f" --set {o}" for o in args.overrides)
    body = (f"`{args.config}`{sets} trained into `{out}`; report and plots: `{out}/report.md`. Closed book is recall "
            f"on the known people (QA and biography-only splits), open book is recall with the person's "
            f"biography in context (fresh people).\n\n{table(s)}")  # fmt: skip
    title = f"Base model pretraining ({args.config})" + ("" if args.section == "pretrain_base" else f", {args.section}")
    write_section(args.section, title, body)


if __name__ == "__main__":
    main()
