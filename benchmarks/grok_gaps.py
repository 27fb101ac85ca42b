"""Where a comparison model errs: its accuracy on the ID and OOD tests by the gap between the two values
compared (0 is a tie, "=": 5% of pairs at 20 values), and its recall of the atomic facts it was trained on.
A model that places values on an approximate line fails close pairs and ties; one that grokked does not.

    python -m benchmarks.grok_gaps runs/grok-comparison-af72/seed0 runs/grok-comparison/seed0 --section grok_gaps
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from benchmarks.results import write_section

GAPS = (0, 1, 2, 3, 4, 5)  # 5: a gap of five or more


@torch.no_grad()
def measure(run: Path) -> dict:
    """Accuracy per split and gap, and atomic recall, of the run's last checkpoint."""
    from retain.config import load_config
    from retain.grok.train import GrokConfig, build, new_model, tensors
    from retain.runs.checkpoint import latest_checkpoint, load_checkpoint, unpack_model

    cfg = load_config(GrokConfig, run / "config.yaml")
    if cfg.task != "comparison":
        raise SystemExit(f"error: {run} is a {cfg.task} run; this measures comparison runs")
    ckpt = latest_checkpoint(run / "ckpt")
    if ckpt is None:
        raise SystemExit(f"error: {run} has no checkpoint")
    data = build(cfg)
    model = new_model(cfg, data).cpu().eval()
    state, meta = load_checkpoint(ckpt)
    unpack_model(model, state)
    E, A = cfg.comparison.entities, cfg.comparison.attributes
    atomic = [(x, t) for x, t in data.train if len(x) == 2]
    value = {(min(x), max(x) - E): t - E - A for x, t in atomic}  # (entity, attribute) -> value, either order
    pad = data.vocab_size

    def predict(examples):
        x, y = tensors(examples, pad)
        return (model(x)[0][:, -1].argmax(-1) == y).tolist()

    out = {"step": meta["step"], "atomic": sum(predict(atomic)) / len(atomic)}
    for split in ("id_test", "ood_test"):
        examples = getattr(data, split)
        gap = [min(abs(value[(e1, a - E)] - value[(e2, a - E)]), GAPS[-1]) for (a, e1, e2), _ in examples]
        hits, n = Counter(), Counter(gap)
        for g, ok in zip(gap, predict(examples)):
            hits[g] += ok
        out[split] = {g: (hits[g] / n[g], n[g]) for g in GAPS if n[g]}
        out[split]["all"] = (sum(hits.values()) / len(examples), len(examples))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="finished `retain grok` comparison runs")
    ap.add_argument("--section", default="grok_gaps")
    args = ap.parse_args()
    if missing := [str(r) for r in args.runs if not (r / "config.yaml").is_file()]:
        raise SystemExit(f"error: {', '.join(missing)}: not a `retain grok` run (no config.yaml)")
    torch.set_num_threads(1)
    head = " | ".join(["tie", "gap 1", "gap 2", "gap 3", "gap 4", "gap >= 5", "all"])
    lines = [f"| run | step | split | {head} | atomic recall |", "| --- | ---: | --- |" + " ---: |" * 8]
    for run in args.runs:
        m = measure(run)
        for split in ("id_test", "ood_test"):
            cells = " | ".join(f"{m[split][g][0]:.2f}" if g in m[split] else "-" for g in (*GAPS, "all"))
            lines.append(f"| `{run}` | {m['step']:,} | {split.replace('_', ' ')} | {cells} | {m['atomic']:.3f} |")
        print(lines[-2], lines[-1], sep="\n")
    body = ("Each run's last checkpoint on its whole ID and OOD tests, by the gap between the two stored values "
            "compared (a tie is \"=\"), and its recall of the atomic facts (entity, attribute) -> value it was "
            "trained on.\n\n" + "\n".join(lines))  # fmt: skip
    write_section(args.section, "Grokking: comparison accuracy by the gap between the values", body)


if __name__ == "__main__":
    main()
