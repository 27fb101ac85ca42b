"""A base model's evaluation suites answered two ways on the same model, in the same run: every context's
questions generated on their own (what `retain.eval.qa.answer` did before questions with a context of their
own were batched) against the suites as `run_suites` answers them now (questions sharing a context read it
once; every other question in one batched generation). Seconds, the speed-up, and how many answers differ.
Written to docs/RESULTS.md (section `eval_batching`).

    python -m benchmarks.eval_batching --base runs/base
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.results import write_section
from retain.eval.qa import ask
from retain.eval.suites import base_suites
from retain.models.build import load_model_and_tokenizer
from retain.models.device import configure, precision
from retain.world.io import load_world


def per_context(model, tok, items) -> list[str]:
    """Each context's questions in a generation of their own (a question with a context of its own alone)."""
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, (context, _) in enumerate(items):
        groups[context].append(i)
    out = [""] * len(items)
    for context, idx in groups.items():
        for i, a in zip(idx, ask(model, tok, [items[i][1] for i in idx], context)):
            out[i] = a
    return out


def timed(fn, *args, repeats: int = 3):
    """The fastest of `repeats` calls of `fn(*args)` (seconds) and its result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/base", help="a run directory with model/ and world/")
    ap.add_argument("--n", type=int, default=200, help="questions per suite (pretraining's eval.final_n)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--section", default="eval_batching")
    args = ap.parse_args()
    configure("cpu", "auto")
    base = Path(args.base)
    if not ((base / "model").is_dir() and (base / "world").is_dir()):
        raise SystemExit(f"error: --base {base} has no model/ and world/; train one first: "
                         f"retain pretrain configs/pretrain.yaml --out {base}")  # fmt: skip
    model, tok = load_model_and_tokenizer(base / "model")
    suites = base_suites(load_world(base / "world"), seed=args.seed, n=args.n)
    rows, totals = [], [0.0, 0.0]
    for name, items in suites.items():
        if not items:
            continue
        (t_before, before), (t_now, now) = (
            timed(per_context, model, tok, items),
            timed(ask, model, tok, [q for _, q in items], [c for c, _ in items]),
        )
        contexts = len({c for c, _ in items})
        differ = sum(a != b for a, b in zip(before, now))
        rows.append(f"| {name} | {len(items)} | {contexts} | {t_before:.2f} | {t_now:.2f} | "
                    f"{t_before / t_now:.1f}x | {differ} |")  # fmt: skip
        totals[0] += t_before
        totals[1] += t_now
        print(rows[-1], flush=True)
    rows.append(f"| all | | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[0] / totals[1]:.1f}x | |")
    body = (
        f"Base `{args.base}` ({sum(p.numel() for p in model.parameters()):,} parameters), its suites at "
        f"{args.n} questions each (seed {args.seed}), greedy answers in {precision()} precision (bf16 autocast "
        "where the CPU computes bf16). Seconds to answer each suite with every context's questions generated "
        "on their own (before) and batched as `run_suites` does now, the fastest of three tries each; answers "
        "that differ between the two.\n\n"
        "| suite | questions | contexts | before (s) | now (s) | speed-up | answers that differ |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows)
    )
    write_section(args.section, "Evaluation: questions with a context of their own in one batch", body)
    print(rows[-1])


if __name__ == "__main__":
    main()
