"""Word-level against BPE tokenizer: which one buys more accuracy per CPU-second of pretraining?

    python -m benchmarks.tokenizer_compare --out runs/tokenizers            # configs/pretrain.yaml, both arms
    python -m benchmarks.tokenizer_compare --out runs/tokenizers --set train.steps=1000

Both arms train the same config for the same steps with the same rows x seq_len tokens per step, one after
the other on the same machine; only `world.tokenizer` differs. A step costs about the same in both, but a BPE
example is longer, so it sees fewer examples. The table compares the final accuracies, the CPU time and the
tokens per biography; the plot puts the accuracies during training against seconds. Finished arms are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.pretrain_sweep import run_one
from benchmarks.results import write_section

ARMS = {"word": ["world.tokenizer=word"], "bpe": ["world.tokenizer=bpe"]}
KEYS = [
    "closed_book_acc",
    "closed_book_acc_bio_split",
    "open_book_acc",
    "heldout_template_acc",
    "session_icl_acc",
    "session_stream_acc",
]


def curves(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "eval/closed_book_acc" in r]


def tokens_per_bio(world_dir: Path, n: int = 200) -> tuple[int, float]:
    """Vocabulary size and mean tokens of a biography, with the world's own tokenizer."""
    import random

    from transformers import AutoTokenizer

    from retain.world import render as R
    from retain.world.io import load_world

    world, tok = load_world(world_dir), AutoTokenizer.from_pretrained(str(world_dir / "tokenizer"))
    rng = random.Random(0)
    bios = [R.bio(rng.choice(world.known), rng) for _ in range(n)]
    return len(tok), sum(len(tok(b)["input_ids"]) for b in bios) / n


def plot(out: Path, runs: dict[str, Path]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key in zip(axes, ["eval/closed_book_acc", "eval/open_book_acc"]):
        for name, run_dir in runs.items():
            rows = curves(run_dir)
            ax.plot([r["seconds"] for r in rows], [r[key] for r in rows], marker="o", label=name)
        ax.set(xlabel="CPU seconds (2 cores)", title=key.removeprefix("eval/"), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall accuracy")
    axes[0].legend()
    fig.tight_layout()
    path = out / "tokenizers.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pretrain.yaml")
    ap.add_argument("--out", default="runs/tokenizers")
    ap.add_argument("--set", action="append", default=[], help="override applied to both arms")
    args = ap.parse_args()
    out = Path(args.out)
    summaries = {name: run_one(args.config, {"name": name, "set": sets}, out, args.set) for name, sets in ARMS.items()}
    if not all(summaries.values()):
        raise SystemExit(f"an arm failed; see the logs in {out}")
    lines = ["| tokenizer | vocab | tokens/biography | seconds | " + " | ".join(KEYS) + " |",
             "| --- |" + " ---: |" * (3 + len(KEYS))]  # fmt: skip
    for name, s in summaries.items():
        vocab, per_bio = tokens_per_bio(out / name / "world")
        cells = [f"{s[k]:.3f}" for k in KEYS]
        lines.append(f"| {name} | {vocab} | {per_bio:.1f} | {s['seconds']:.0f} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    best = max(summaries, key=lambda n: summaries[n]["closed_book_acc"] + summaries[n]["open_book_acc"])
    png = plot(out, {name: out / name for name in ARMS})
    body = (f"Config `{args.config}` with `{' '.join(args.set) or 'no overrides'}`; the arms differ only in "
            f"`world.tokenizer`. Plot: `{png}`.\n\n" + "\n".join(lines) + f"\n\nBetter per CPU-second: **{best}** "
            "(higher closed-book plus open-book recall for the same steps and seconds).")  # fmt: skip
    (out / "table.md").write_text(body + "\n")
    print(body)
    write_section("tokenizer_compare", "Word-level vs BPE tokenizer per CPU-second", body)


if __name__ == "__main__":
    main()
