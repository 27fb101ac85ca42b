"""Can a base that reads the two cities at chance learn them when trained on nothing else?

Each base given is trained further on contrast examples only (fresh people born in one city and living in
another, asked both: `mixture.contrast_steps` for the whole run), and its contrast accuracy (the question set of
`benchmarks/reading_circuit.py`, 0.5 is chance) is measured every `--every` steps. A base whose answer position
never looks at the cities gets no gradient toward the head that would tell them apart (docs/world.md).

    python -m benchmarks.contrast_repair runs/worlds/seed2 runs/worlds-x/w0s2 --optimizer adamw --lr 1e-3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.reading_circuit import contrast_accuracy, contrast_questions
from benchmarks.results import write_section


def repair(run: str, optimizer: str, lr: float, steps: int, every: int, seed: int = 0) -> list[tuple[int, float]]:
    """(step, contrast accuracy) while `run`'s model trains on contrast examples alone at a constant `lr`."""
    from retain.models.build import load_model_and_tokenizer
    from retain.train.data import MixtureConfig, forward_packed, pretrain_batch
    from retain.train.optim import make_optimizer
    from retain.world.io import load_world

    model, tok = load_model_and_tokenizer(f"{run}/model")
    world = load_world(f"{run}/world")
    questions = contrast_questions(world, tok, 100)
    mix = MixtureConfig(reading_warmup_steps=0, contrast_steps=steps + 1)  # contrast examples only
    opt = make_optimizer(optimizer, model.named_parameters(), lr, 0.0)
    reserved, curve = set(world.entities), []
    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            curve.append((step, contrast_accuracy(model, tok, questions)))
            print(f"{run} {optimizer} step {step}: contrast {curve[-1][1]:.3f}", flush=True)
        if step == steps:
            break
        ids, labels, positions = pretrain_batch(world, tok, mix, seed, step, 16, 256, reserved)
        model.train()
        forward_packed(model, ids, positions, labels, (labels[:, 1:] != -100).sum()).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="pretraining run directories (each with model/ and world/)")
    ap.add_argument("--optimizer", nargs="+", default=["adamw"], choices=["adamw", "muon"])
    ap.add_argument("--lr", nargs="+", type=float, default=[1e-3], help="one per optimizer, or one for all")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="contrast_repair")
    args = ap.parse_args()
    if missing := [r for r in args.runs if not (Path(r, "model").is_dir() and Path(r, "world").is_dir())]:
        raise SystemExit(f"error: {', '.join(missing)}: not a pretraining run (needs model/ and world/)")
    if len(args.lr) not in (1, len(args.optimizer)):
        raise SystemExit(f"error: --lr takes one rate or one per optimizer ({len(args.optimizer)})")
    if args.steps < 1 or not 1 <= args.every <= args.steps:
        raise SystemExit("error: --steps must be positive and --every in [1, --steps]")
    if args.threads:
        torch.set_num_threads(args.threads)
    lrs = args.lr * len(args.optimizer) if len(args.lr) == 1 else args.lr
    t0, curves = time.perf_counter(), {}
    for run in args.runs:
        for optimizer, lr in zip(args.optimizer, lrs):
            curves[(run, optimizer, lr)] = repair(run, optimizer, lr, args.steps, args.every)
    steps = [s for s, _ in next(iter(curves.values()))]
    lines = ["| base | optimizer | lr | " + " | ".join(f"step {s}" for s in steps) + " |",
             "| --- | --- | ---: |" + " ---: |" * len(steps)]  # fmt: skip
    for (run, optimizer, lr), curve in curves.items():
        lines.append(f"| `{run}` | {optimizer} | {lr:g} | " + " | ".join(f"{a:.3f}" for _, a in curve) + " |")
    body = (
        "Each base trained further on contrast examples only (fresh people born in one city and living in another, "
        f"asked both; batches of 16 rows of 256 tokens, constant rate, no weight decay), its contrast accuracy "
        f"(one question on each city of 100 fresh people, 0.5 is chance) every {args.every} steps. "
        f"{time.perf_counter() - t0:.0f} s in all.\n\n" + "\n".join(lines)
    )
    write_section(args.section, "Training a base on the two cities alone", body)


if __name__ == "__main__":
    main()
