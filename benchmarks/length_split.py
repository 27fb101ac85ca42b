"""NoPE against RoPE (and ALiBi) on a length split: the backbone (retain/models/backbone.py) trained from scratch
on copy and reverse with inputs of at most `--train-len` symbols, tested up to twice as long (Kazemnejad et al.
2023 at CPU scale: ../shared/references/seed-methods.md section 3).

    python -m benchmarks.length_split --tasks copy          # 3 positions x 3 seeds, ~30 min on 1 core
    python -m benchmarks.length_split --tasks copy --seeds 0 --steps 300 --section length_split_smoke

An example is `[BOS] x1 .. xn [SEP] y1 .. yn` with y = x (copy) or x reversed (reverse); the loss is on the y
positions only. Every batch has one n, drawn from 1..train_len. Exact match is teacher-forced (every y token's
argmax right), which is what greedy decoding produces. Each (task, position, seed) run keeps its curve in
`--out`; a finished one is read back, so the same command resumes. Writes docs/RESULTS.md and
docs/img/<section>.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.mqar import warmup_cosine
from benchmarks.results import RESULTS, resumable, write_section

BOS, SEP, FIRST = 0, 1, 2  # special tokens, then the symbols
POSITIONS = ("rope", "nope", "alibi")
SHAPE = ("train_len", "steps", "d_model", "layers", "heads", "symbols", "batch_size", "lr")  # a record read back
# must have been trained with the same
TASKS = ("copy", "reverse")


def batch(task: str, n: int, size: int, symbols: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` examples with n symbols: ids (size, 2n + 2) and labels (-100 except at the answer's tokens)."""
    x = torch.randint(FIRST, FIRST + symbols, (size, n), generator=g)
    y = x if task == "copy" else x.flip(1)
    ids = torch.cat([torch.full((size, 1), BOS), x, torch.full((size, 1), SEP), y], 1)
    labels = torch.full_like(ids, -100)
    labels[:, n + 2 :] = y
    return ids, labels


def scores(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Loss on the answer tokens, their argmax accuracy, and exact match per example."""
    logits, _ = model(ids)
    logits, target = logits[:, :-1], labels[:, 1:]
    m = target != -100
    loss = F.cross_entropy(logits[m].float(), target[m])
    right = (logits.argmax(-1) == target) | ~m
    return loss, right[m].float().mean().item(), right.all(1).float().mean().item()


def train(task: str, position: str, seed: int, args, path: Path) -> dict:
    """One model: trained, then evaluated at every test length; its record (also written to `path`)."""
    from retain.models.backbone import Backbone, BackboneConfig, init_weights
    from retain.runs.progress import progress

    longest = 2 * max(args.test_lens) + 2
    cfg = BackboneConfig(vocab_size=FIRST + args.symbols, d_model=args.d_model, n_layers=args.layers,
                         n_heads=args.heads, d_ff=4 * args.d_model, position=position, max_seq_len=longest)  # fmt: skip
    model = init_weights(Backbone(cfg), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
    sched = warmup_cosine(opt, args.steps)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in progress(range(args.steps), desc=f"{task} {position} seed {seed}"):
        n = int(torch.randint(1, args.train_len + 1, (1,), generator=g))
        loss, _, _ = scores(model, *batch(task, n, args.batch_size, args.symbols, g))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    model.eval()
    held = torch.Generator().manual_seed(10_000 + seed)  # the same test examples for every position
    em, tok = {}, {}
    with torch.no_grad():
        for n in args.test_lens:
            _, tok[n], em[n] = scores(model, *batch(task, n, 256, args.symbols, held))
    rec = {"task": task, "position": position, "seed": seed, "em": em, "token_acc": tok, "seconds": seconds,
           **{k: getattr(args, k) for k in SHAPE}}  # fmt: skip
    path.write_text(json.dumps(rec))
    return rec


def plot(records: list[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.tasks), figsize=(5 * len(args.tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], args.tasks):
        for position in args.positions:
            runs = [r for r in records if r["task"] == task and r["position"] == position]
            mean = [statistics.mean(r["em"][n] for r in runs) for n in args.test_lens]
            lo = [min(r["em"][n] for r in runs) for n in args.test_lens]
            hi = [max(r["em"][n] for r in runs) for n in args.test_lens]
            ax.plot(args.test_lens, mean, marker="o", label=position)
            ax.fill_between(args.test_lens, lo, hi, alpha=0.15)
        ax.axvline(args.train_len, color="grey", ls=":", lw=1)
        ax.set_title(f"{task} (trained on n <= {args.train_len})")
        ax.set_xlabel("symbols n")
        ax.set_ylabel("exact match (mean, min-max over seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--positions", nargs="+", default=list(POSITIONS), choices=POSITIONS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--train-len", type=int, default=16, help="longest input seen in training")
    ap.add_argument("--test-lens", nargs="+", type=int, default=[4, 8, 12, 16, 20, 24, 28, 32])
    ap.add_argument("--symbols", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/length-split")
    ap.add_argument("--section", default="length_split")
    args = ap.parse_args()
    if args.train_len < 1 or args.steps < 1 or args.symbols < 2 or min(args.test_lens) < 1:
        raise SystemExit("error: --train-len, --steps and every --test-lens must be >= 1, and --symbols >= 2")
    args.test_lens = sorted(set(args.test_lens))
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with resumable(out):
        for task in args.tasks:
            for position in args.positions:
                for seed in args.seeds:
                    path = out / f"{task}-{position}-seed{seed}.json"
                    if path.exists():  # finished before: read back
                        rec = json.loads(path.read_text())
                        if all(rec.get(k) == getattr(args, k) for k in SHAPE):
                            rec["em"] = {int(k): v for k, v in rec["em"].items()}
                            rec["token_acc"] = {int(k): v for k, v in rec["token_acc"].items()}
                            if set(args.test_lens) <= set(rec["em"]):
                                records.append(rec)
                                continue
                    records.append(train(task, position, seed, args, path))
    inside = [n for n in args.test_lens if n <= args.train_len]
    beyond = [n for n in args.test_lens if n > args.train_len]
    lines = ["| task | position | " + " | ".join(f"n={n}" for n in args.test_lens)
             + " | mean EM, n <= train | mean EM, n > train | token accuracy, n > train | s per run |",
             "| --- | --- |" + " ---: |" * (len(args.test_lens) + 4)]  # fmt: skip
    for task in args.tasks:
        for position in args.positions:
            runs = [r for r in records if r["task"] == task and r["position"] == position]

            def cell(ns, runs=runs, key="em"):
                vals = [statistics.mean(r[key][n] for n in ns) for r in runs]
                sd = f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
                return f"{statistics.mean(vals):.2f}{sd}" if ns else "-"

            per_n = " | ".join(f"{statistics.mean(r['em'][n] for r in runs):.2f}" for n in args.test_lens)
            tok = cell(beyond, key="token_acc")
            lines.append(f"| {task} | {position} | {per_n} | {cell(inside)} | {cell(beyond)} | {tok} | "
                         f"{statistics.mean(r['seconds'] for r in runs):.0f} |")  # fmt: skip
    img = RESULTS.parent / "img" / f"{args.section}.png"
    img.parent.mkdir(exist_ok=True)
    plot(records, args, img)
    body = (f"The backbone ({args.layers} layers of {args.d_model}, {args.heads} heads) trained from scratch per "
            f"task, position encoding and seed ({', '.join(map(str, args.seeds))}): {args.steps} steps of "
            f"{args.batch_size} examples, AdamW lr {args.lr} (warm-up, cosine), inputs of 1-{args.train_len} of "
            f"{args.symbols} symbols; exact match on 256 test examples per length (mean over seeds; ± the sd over "
            f"seeds of each run's mean). Run records in `{out}`.\n\n" + "\n".join(lines)
            + f"\n\n![exact match against input length]({img.relative_to(RESULTS.parent)})")  # fmt: skip
    write_section(args.section, f"NoPE, RoPE and ALiBi on a length split ({', '.join(args.tasks)})", body)
    print(body)


if __name__ == "__main__":
    main()
