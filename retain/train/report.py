"""report.md and plots of a pretraining run, read back from its metrics.jsonl and summary."""

from __future__ import annotations

from typing import Any

from retain.config import to_yaml
from retain.eval.plots import curves
from retain.runs.rundir import RunDir

EVAL_KEYS = {
    "eval/closed_book_acc": "closed-book recall (known)",
    "eval/closed_book_acc_bio_split": "closed-book recall, bio-only split",
    "eval/open_book_acc": "open-book recall (new, in context)",
    "eval/heldout_template_acc": "held-out templates (open-book)",
    "eval/binding_acc": "four people in context, same attribute",
    "eval/session_icl_acc": "one session in context",
    "eval/session_stream_acc": "all sessions in context",
}


def write_pretrain_report(run: RunDir, cfg: Any, summary: dict[str, Any]) -> None:
    records = run.metrics()
    run.savefig(curves(records, "step", {"train/loss": "train loss"}, "Pretraining loss", "loss", logy=True),
                "loss.png")  # fmt: skip
    run.savefig(curves(records, "step", EVAL_KEYS, "Accuracy during pretraining (quick eval subsets)",
                       "exact-match accuracy", ylim=(0, 1.02)), "accuracy.png")  # fmt: skip
    rows = [(k.removeprefix("eval/"), label) for k, label in EVAL_KEYS.items() if k.removeprefix("eval/") in summary]
    table = "\n".join(f"| {label} | `{k}` | {summary[k]:.3f} |" for k, label in rows)
    suites = sorted({k.split("/")[0] for k in summary if "/acc/" in k})
    kinds = sorted({k.split("/")[2] for k in summary if "/acc/" in k})
    per_kind = ["| suite | " + " | ".join(kinds) + " |", "| --- |" + " ---: |" * len(kinds)]
    for s in suites:
        cells = [f"{summary[f'{s}/acc/{k}']:.3f} (n={summary[f'{s}/n/{k}']})" if f"{s}/acc/{k}" in summary else ""
                 for k in kinds]  # fmt: skip
        per_kind.append(f"| {s} | " + " | ".join(cells) + " |")
    text = f"""# Pretraining report: {run.path.name}

{summary["params"]:,} parameters, {summary["tokens_seen"]:,} tokens, {summary["steps"]} steps, \
{summary["seconds"]:.0f} s.

| what | key | accuracy |
| --- | --- | ---: |
{table}

Closed-book covers every known entity; the bio-only split holds the known entities whose question-answer
pairs never appeared in training, so their accuracy measures knowledge extraction from biographies.

## Accuracy by suite and question kind

{chr(10).join(per_kind)}

![loss](loss.png)

![accuracy](accuracy.png)

## Config

```yaml
{to_yaml(cfg)}```
"""
    run.write_report(text)
