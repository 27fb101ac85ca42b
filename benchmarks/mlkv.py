"""MLKV on the world: how much of the base model's knowledge and reading survives when fewer layers own K/V.
Pretrains one config with `model.kv_layers` = m for each m (the backbone, retain/models/backbone.py; m = L is
the plain decoder built the same way) and records closed-book, open-book and session-reading accuracy against
the KV cache bytes per token the Fermi calculator counts from each saved model config: the analogue of the
MLKV paper's table (Pythia 160M: 52.8 average at every layer ... 41.1 at one KV layer).

    python -m benchmarks.mlkv --set model.layers=4 --kv-layers 4 2 1      # into runs/mlkv/m{m}
    python -m benchmarks.mlkv --kv-layers 3 1 --set train.steps=400 --section mlkv_try
    python -m benchmarks.mlkv --kv-layers 3 1 --plain     # the plain Llama beside them, from the same draw

A value whose run holds a summary is only read back; one left half-way resumes. Writes its section of
docs/RESULTS.md and docs/img/<section>.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.results import RESULTS, pretrain_or_resume, write_section

ROWS = ["closed_book_acc", "open_book_acc", "session_icl_acc", "heldout_template_acc", "seconds"]
KEEP, BYTES = 0.9, 0.25  # the target: m = 2 keeps >= 0.9 of open-book at <= 1/4 of the KV bytes


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def kv_bytes(run: Path) -> float:
    """KV cache bytes per token (bf16) of the model a run saved, as the Fermi calculator counts them."""
    from retain.fermi.arch import from_hf_config
    from retain.fermi.formulas import kv_bytes_per_token

    return kv_bytes_per_token(from_hf_config(json.loads((run / "model" / "config.json").read_text())), "bf16")


def plot(rows: list[tuple[int, float, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for key, label in (("closed_book_acc", "closed-book"), ("open_book_acc", "open-book"),
                       ("session_icl_acc", "one session read")):  # fmt: skip
        ax.plot([b for _, b, _ in rows], [s[key] for *_, s in rows], "o-", label=label)
    for m, b, s in rows:
        ax.annotate(f"m={m}", (b, s["open_book_acc"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("KV cache bytes per token (bf16)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pretrain.yaml")
    ap.add_argument("--out", default="runs/mlkv")
    ap.add_argument("--kv-layers", type=int, nargs="+", default=[4, 2, 1], help="values of m, the first the reference")
    ap.add_argument(
        "--plain",
        action="store_true",
        help="also pretrain the plain Llama of the config (into <out>/llama); every m starts from its draw",
    )
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="override for every run")
    ap.add_argument("--section", default="mlkv", help="name of the RESULTS.md section")
    args = ap.parse_args()

    rows = []
    for m in args.kv_layers:
        out = Path(args.out) / f"m{m}"
        summary = pretrain_or_resume(args.config, [*args.overrides, f"model.kv_layers={m}"], out)
        rows.append((m, kv_bytes(out), summary))
    if args.plain:
        plain = pretrain_or_resume(args.config, args.overrides, Path(args.out) / "llama")
    (m0, b0, ref) = rows[0]
    lines = ["| m (layers owning K/V) | KV bytes / token | x of m = " + f"{m0} | "
             + " | ".join(ROWS) + " | open-book x of m = " + f"{m0} |",
             "| ---: | ---: | ---: |" + " ---: |" * (len(ROWS) + 1)]  # fmt: skip
    for m, b, s in rows:
        cells = [f"{s[k]:.0f}" if k == "seconds" else f"{s[k]:.3f}" for k in ROWS]
        lines.append(f"| {m} | {b:,.0f} | {b / b0:.2f} | " + " | ".join(cells)
                     + f" | {ratio(s['open_book_acc'], ref['open_book_acc']):.2f} |")  # fmt: skip
    if args.plain:
        b = kv_bytes(Path(args.out) / "llama")
        cells = [f"{plain[k]:.0f}" if k == "seconds" else f"{plain[k]:.3f}" for k in ROWS]
        lines.append(f"| Llama (no switch) | {b:,.0f} | {b / b0:.2f} | " + " | ".join(cells)
                     + f" | {ratio(plain['open_book_acc'], ref['open_book_acc']):.2f} |")  # fmt: skip
    small = [(m, b, s) for m, b, s in rows if b / b0 <= BYTES]
    verdict = (f"At <= {BYTES:.2f} of the KV bytes (m = {', '.join(str(m) for m, *_ in small)}): open-book "
               + ", ".join(f"{ratio(s['open_book_acc'], ref['open_book_acc']):.2f}x" for *_, s in small)
               + f" of m = {m0} (target >= {KEEP}x): "
               + ("met" if ref["open_book_acc"] > 0
                  and all(s["open_book_acc"] >= KEEP * ref["open_book_acc"] for *_, s in small)
                  else "not met")
               if small else f"No value of m reaches <= {BYTES:.2f} of the KV bytes; add a smaller m.")  # fmt: skip
    if args.plain:  # the backbone at m = L is Llama's decoder: it should train to Llama's numbers
        gap = ratio(ref["open_book_acc"], plain["open_book_acc"])
        verdict += (f"\n\nThe backbone at m = {m0} from the plain Llama's own initial weights reaches {gap:.2f}x its "
                    "open-book accuracy"
                    + (": the backbone itself trains worse than Llama, so the MLKV ratios above "
                       "measure the backbone, not MLKV on the default model." if gap < 0.95 else "."))  # fmt: skip
    section = args.section
    (RESULTS.parent / "img").mkdir(exist_ok=True)
    plot(rows, RESULTS.parent / "img" / f"{section}.png")
    body = (f"`{args.config}`{''.join(f' --set {o}' for o in args.overrides)} with `model.kv_layers` = m, run into "
            f"`{args.out}/m<m>`" + (f" (the plain Llama into `{args.out}/llama`)" if args.plain else "")
            + ". Every m starts from the plain Llama's initial weights wherever a name and shape match "
            "(retain/models/build.py). KV bytes per token are the Fermi calculator's, from each saved model config "
            "(bf16); "
            "`seconds` is the training wall time.\n\n" + "\n".join(lines) + f"\n\n{verdict}\n\n"
            f"![accuracy against KV bytes per token](img/{section}.png)")  # fmt: skip
    write_section(section, "MLKV on the world: accuracy against KV cache bytes", body)
    print("\n".join(lines))
    print(verdict)


if __name__ == "__main__":
    main()
