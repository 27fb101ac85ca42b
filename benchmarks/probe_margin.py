"""How fragile the kept base-probe questions of a finished run are: the bare model's margin on the first token
of each kept question's answer (p(top 1) - p(top 2) at the answer's first position, the run's shots in
front), and which of them each memory medium lost. A question answered right by a coin's margin flips under
any write; a drop made of such flips is noise around the model's knowledge, not knowledge lost. With
`eval.known_prompts` the run also split the kept questions into known (right under every few-shot prompt)
and not; this counts the lost ones on each side, and gives the drop on the kept questions that are not
near ties (margin >= 0.1): what a write costs of what the bare model answers firmly.

    python -m benchmarks.probe_margin --run runs/real-smollm2-cloze-full

Writes its section of docs/RESULTS.md and its histogram to docs/img/<section>.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.results import RESULTS, write_section

THIN = 0.1  # a margin below this is a near tie


def margins(run: Path) -> dict[str, float]:
    """Per kept probe question of `run`, the bare model's first-token margin on its answer."""
    import torch

    from retain.config import load_config
    from retain.continual.loop import ContinualConfig, prepare
    from retain.continual.stream import PROBE
    from retain.models.build import load_model_and_tokenizer
    from retain.models.device import autocast, configure, device_of
    from retain.models.text import use_format
    from retain.world.io import load_questions

    cfg = load_config(ContinualConfig, run / "config.yaml")
    configure(cfg.device, cfg.precision)
    base, _, fmt, _ = prepare(cfg)
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    kept = set(json.loads((run / "base_probe.json").read_text()))
    out = {}
    for q in (q for q in load_questions(cfg.base_probe or PROBE) if q.text in kept):  # the whole probe: an older
        # run may have kept questions the probe's current shuffle no longer asks
        head, tail = fmt.prompt(q.text, None)
        ids = list(fmt.start) + [
            i for part in (head, tail) if part for i in tok(part, add_special_tokens=False)["input_ids"]
        ]
        with torch.no_grad(), autocast(device_of(model)):
            p = model(torch.tensor([ids], device=device_of(model))).logits[0, -1].float().softmax(-1)
        top = p.topk(2).values
        out[q.text] = float(top[0] - top[1])
    return out


def plot(margin: dict[str, float], lost: set[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / 20 for i in range(21)]
    ax.hist([m for q, m in margin.items() if q not in lost], bins=bins, alpha=0.7, label="never lost")
    ax.hist([m for q, m in margin.items() if q in lost], bins=bins, alpha=0.7, label="lost by some medium")
    ax.set_xlabel("bare model's first-token margin on the answer")
    ax.set_ylabel("kept probe questions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/real-smollm2-cloze-full", help="a finished run on a plain model")
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: probe_margin_<run name>)")
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "base_probe.json").is_file():
        raise SystemExit(f"{run} holds no base_probe.json: give a run on a plain model folder (--run DIR)")
    margin = margins(run)
    known_path = run / "base_known.json"
    known = set(json.loads(known_path.read_text())) if known_path.exists() else None
    records = {p.stem: json.loads(p.read_text()) for p in sorted((run / "media").glob("*.json"))
               if not p.name.endswith(".queries.json")}  # fmt: skip
    thin = {q for q, m in margin.items() if m < THIN}
    firm = len(margin) - len(thin)
    lines = ["| medium | lost | of them near ties (margin < 0.1) | median margin of the lost | lost known | "
             f"drop without the near ties (of {firm}) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    every_lost: set[str] = set()
    for name, r in records.items():
        lost = {x["question"] for x in r.get("base_lost", [])} & set(margin)
        every_lost |= lost
        med = f"{statistics.median(margin[q] for q in lost):.2f}" if lost else "-"
        drop = f"{-100 * len(lost - thin) / firm:+.1f} pt" if firm else "-"
        lines.append(f"| {name} | {len(lost)} | {len(lost & thin)} | {med} | "
                     f"{'-' if known is None else len(lost & known)} | {drop} |")  # fmt: skip
    never = [m for q, m in margin.items() if q not in every_lost]
    summary = (f"{len(margin)} kept probe questions, {len(thin)} of them near ties (bare model's first-token margin "
               f"< {THIN}); median margin {statistics.median(margin.values()):.2f}. Lost by some medium: "
               f"{len(every_lost)}, median margin "
               f"{statistics.median(margin[q] for q in every_lost) if every_lost else float('nan'):.2f}; never "
               f"lost: median {statistics.median(never) if never else float('nan'):.2f}.")  # fmt: skip
    if known is not None:
        summary += (f" Known (right under every few-shot prompt): {len(known)}, of them near ties: "
                    f"{len(known & thin)}; lost by some medium: {len(every_lost & known)}.")  # fmt: skip
    section = args.section or f"probe_margin_{run.name}"
    (RESULTS.parent / "img").mkdir(exist_ok=True)
    plot(margin, every_lost, RESULTS.parent / "img" / f"{section}.png")
    body = (f"Run `{run}`.\n\n{summary}\n\n" + "\n".join(lines)
            + f"\n\n![first-token margins of the kept probe questions](img/{section}.png)")  # fmt: skip
    write_section(section, f"Base-probe margins: {run.name}", body)
    print(summary)


if __name__ == "__main__":
    main()
