"""The grokking studies (Wang et al. 2024 at CPU scale; docs/grok.md): `retain grok` on a config for several
seeds (and, with --set, arms such as the looped model), each into its own run directory under --out, and the
curves and numbers against the targets in docs/RESULTS.md.

    python -m benchmarks.grok --config configs/grok/comparison.yaml --seeds 0 1 --out runs/grok-comparison
    python -m benchmarks.grok --config configs/grok/composition.yaml --seeds 0 --out runs/grok-looped \
        --set model.loop=2 --section grok_composition_looped

A finished seed is read back and an interrupted one resumed, so the same command goes on where it stopped.
`--reuse SEED=DIR` takes a run made before with the same config (its config.yaml is checked).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.results import RESULTS, resumable, write_section

TARGETS = {  # the paper's Fig. 1 pattern at the end of training
    "comparison": "OOD test >= 0.9",
    "composition": "ID test >= 0.9 with OOD test <= 0.1",
}


def met(task: str, s: dict) -> bool:
    if task == "comparison":
        return s["ood_test"] >= 0.9
    return s["id_test"] >= 0.9 and s["ood_test"] <= 0.1


def delayed(s: dict, records: list[dict]) -> str:
    """Whether training fitted before ID test accuracy rose: where training first reached 0.9 (and ID there), and
    its steps to train >= 0.99 against ID >= 0.9 (retain.grok.train.summarize). Training can sit at 0.9-0.97 until
    the ID rise, so 0.99 alone would hide the delay."""
    t, i = s["train_99_at"], s["id_90_at"]
    fit = next((r for r in records if r["train"] >= 0.9), None)
    head = f"train >= 0.9 at {fit['step']:,} (ID {fit['id_test']:.2f}); " if fit else ""
    if t is None:
        return head + "train never >= 0.99"
    if i is None:
        return head + f"train >= 0.99 at {t:,}; ID never >= 0.9"
    return head + f"train >= 0.99 at {t:,}, ID >= 0.9 at {i:,} ({i / max(t, 1):.1f}x later)"


def plot(curves: dict[str, list[dict]], windows: dict[str, list[dict]], title: str, path: Path) -> None:
    """Accuracies per seed against steps (log x) and, where the runs recorded them, the largest training loss
    per window below (a loss spike between evaluations shows there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if any(windows.values()) else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 3.4 * rows + 0.6), sharex=True, squeeze=False)
    ax = axes[0, 0]
    styles = {"train": ":", "id_test": "-", "ood_test": "--"}
    for i, (name, records) in enumerate(curves.items()):
        for key, ls in styles.items():
            ax.plot([max(r["step"], 1) for r in records], [r[key] for r in records], ls=ls, color=f"C{i}",
                    label=f"{name} {key.replace('_', ' ')}")  # fmt: skip
    ax.set(xscale="log", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=7, ncol=2)
    if rows == 2:
        ax = axes[1, 0]
        for i, (name, records) in enumerate(windows.items()):
            ax.plot([r["step"] for r in records], [r["loss_max"] for r in records], color=f"C{i}", lw=0.8,
                    label=f"{name}")  # fmt: skip
        ax.set(yscale="log", ylabel="largest training loss in the window")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("optimisation step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--out", required=True, help="one run directory per seed: OUT/seed<N>")
    ap.add_argument("--reuse", nargs="*", default=[], help="SEED=DIR: a finished run of the same config")
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: grok_<config name>)")
    args = ap.parse_args()

    from retain.config import load_config
    from retain.grok.train import GrokConfig, grok

    reuse = {}
    for item in args.reuse:
        seed, _, path = item.partition("=")
        if not seed.isdigit() or not Path(path, "summary.json").exists():
            raise SystemExit(f"error: --reuse {item}: want SEED=DIR of a finished run (DIR/summary.json)")
        reuse[int(seed)] = Path(path)
    out = Path(args.out)
    summaries, curves, windows = {}, {}, {}
    cfg = None
    with resumable(out):
        for seed in args.seeds:
            cfg = load_config(GrokConfig, args.config, [*args.overrides, f"seed={seed}"])
            run = reuse.get(seed, out / f"seed{seed}")
            if seed in reuse:
                theirs = load_config(GrokConfig, run / "config.yaml")
                keys = ("task", "steps", "lr", "weight_decay", "batch_size", "model", "composition", "comparison")
                diff = [k for k in keys if getattr(theirs, k) != getattr(cfg, k)]
                if diff or theirs.seed != seed:
                    raise SystemExit(f"error: --reuse {seed}={run}: its config differs in {diff or ['seed']}")
            if (run / "summary.json").exists():
                summaries[seed] = json.loads((run / "summary.json").read_text())
            else:
                summaries[seed] = grok(cfg, str(run), resume=(run / "config.yaml").exists())
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            curves[f"seed {seed}"] = [r for r in records if "train" in r]
            windows[f"seed {seed}"] = [r for r in records if "loss_max" in r]
    task = cfg.task
    section = args.section or f"grok_{Path(args.config).stem}"
    img = RESULTS.parent / "img" / f"{section}.png"
    img.parent.mkdir(exist_ok=True)
    m = cfg.model
    plot(curves, windows, f"{task}, {m.n_layers} layers of {m.d_model}, loop {m.loop}, wd {cfg.weight_decay}", img)
    lines = ["| seed | steps | train | ID test | OOD test | delayed generalisation | seconds | target |",
             "| ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]  # fmt: skip
    for seed, s in summaries.items():
        lines.append(f"| {seed} | {s['steps']:,} | {s['train']:.3f} | {s['id_test']:.3f} | {s['ood_test']:.3f} | "
                     f"{delayed(s, curves[f'seed {seed}'])} | {s['seconds']:.0f} | "
                     f"{'met' if met(task, s) else 'not met'} |")  # fmt: skip
    data = vars(cfg.composition if task == "composition" else cfg.comparison)
    data = ", ".join(f"{k} {v}" for k, v in data.items())
    sizes = ", ".join(f"{k} {v:,}" for k, v in next(iter(summaries.values()))["sizes"].items())
    body = (f"`{args.config}`{''.join(f' --set {o}' for o in args.overrides)}, seeds "
            f"{', '.join(map(str, summaries))}, run directories under `{out}`. Data: {data}; examples: {sizes}. "
            f"Model: {m.n_layers} layers of {m.d_model}, {m.n_heads} heads, loop {m.loop}; AdamW lr {cfg.lr}"
            f"{f' (linear to 0 over the last {cfg.warmdown_steps:,} steps)' if cfg.warmdown_steps else ''}, weight "
            f"decay {cfg.weight_decay}, batch {cfg.batch_size}. Target ({task}): {TARGETS[task]} at the end, over "
            f"every seed. Accuracies at the last step, on fixed subsets of {cfg.eval_n} per split.\n\n"
            + "\n".join(lines) + f"\n\n![accuracy against steps]({img.relative_to(RESULTS.parent)})")  # fmt: skip
    write_section(section, f"Grokking: {task} (loop {m.loop})", body)
    print(body)


if __name__ == "__main__":
    main()
