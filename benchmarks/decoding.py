"""Decoding on the world: factual accuracy against diversity for fixed temperatures, top-p, locally typical
sampling and the learned adaptive temperature (frozen and joint heads, three mappings).

    python -m benchmarks.decoding --base runs/base --out runs/decoding

Trains two temperature heads on biographies of half the known people (frozen: the model fixed; joint: the
model too), then generates biographies of people from the other half and summaries of the sessions with
every decoding. Writes results.json (resumable: finished settings are kept), decoding.png and a section
of docs/RESULTS.md. The adaptive head lies above the fixed-temperature curve when its fact accuracy beats
the curve's (piecewise-linear) accuracy at the same diversity.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.results import write_section

TEMPS = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.6]
TOP_P = [0.5, 0.7, 0.9, 0.95]
TYPICAL = [0.2, 0.5, 0.8, 0.95]
MAPPINGS = ["linear", "exponential", "inverse_sigmoid"]


def settings(out: Path) -> list[tuple[str, str, dict]]:
    """(family, model, DecodingConfig kwargs) for every point of the comparison."""
    rows = [("greedy", "base", {})]
    rows += [("temperature", "base", {"temperature": t}) for t in TEMPS]
    rows += [("top-p", "base", {"temperature": 1.0, "top_p": p}) for p in TOP_P]
    rows += [("typical", "base", {"temperature": 1.0, "typical_p": p}) for p in TYPICAL]
    for mode in ("frozen", "joint"):
        model = "base" if mode == "frozen" else "joint"
        rows += [(f"adaptive {mode}", model, {"adaptive": m, "head": str(out / f"head_{mode}")}) for m in MAPPINGS]
    rows += [("temperature (joint model)", "joint", {"temperature": t}) for t in (0.0, 0.5, 0.9, 1.3)]
    return rows


def interp(points: list[tuple[float, float]], x: float) -> float | None:
    """The best y the piecewise-linear curve through `points` (in temperature order) reaches at x: where
    diversity is not monotone in temperature the curve passes x more than once, and the upper pass counts.
    None when x lies outside the curve's range."""
    ys = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if min(x0, x1) <= x <= max(x0, x1):
            ys.append(max(y0, y1) if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return max(ys) if ys else None


def average(runs: list[dict]) -> dict:
    """Mean of each number over seeds, the standard deviation of fact accuracy, the first seed's examples."""
    import statistics

    out = {k: statistics.fmean(r[k] for r in runs) for k, v in runs[0].items() if isinstance(v, (int, float))}
    out["fact_acc_sd"] = statistics.stdev([r["fact_acc"] for r in runs]) if len(runs) > 1 else 0.0
    return {**out, "examples": runs[0]["examples"]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for r, task in enumerate(("biographies", "summaries")):
        for c, div in enumerate(("template_entropy", "distinct_2")):
            ax = axes[r][c]
            for fam, style in (("temperature", "o-"), ("top-p", "s--"), ("typical", "^--"),
                               ("temperature (joint model)", "o:")):  # fmt: skip
                fams = (fam, "greedy") if fam == "temperature" else (fam,)
                rows = sorted((x for x in results if x["family"] in fams), key=lambda x: [  # along the curve's knob
                    x["config"].get(k, 0.0) for k in ("temperature", "top_p", "typical_p")])  # fmt: skip
                pts = [(x[task][div], x[task]["fact_acc"], x["label"]) for x in rows]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=4, label=fam)
                    if fam == "temperature":
                        for px, py, lab in pts:
                            ax.annotate(lab, (px, py), textcoords="offset points", xytext=(3, -9), fontsize=6)
            for fam, marker in (("adaptive frozen", "*"), ("adaptive joint", "P")):
                for x in (x for x in results if x["family"] == fam):
                    ax.scatter(x[task][div], x[task]["fact_acc"], marker=marker, s=90, zorder=3,
                               label=f"{fam} {x['config'].get('adaptive', '')}".strip())  # fmt: skip
            ax.set(xlabel=div.replace("_", " "), ylabel="fact accuracy", title=task)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Accuracy against diversity per decoding (adaptive heads as markers)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/base")
    ap.add_argument("--out", default="runs/decoding")
    ap.add_argument("--people", type=int, default=96, help="people whose biographies are generated")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--seeds", type=int, default=3, help="sampling seeds per decoding (metrics are averaged)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from retain.models.build import load_model, load_model_and_tokenizer
    from retain.runs.files import atomic_write_json
    from retain.runs.progress import progress
    from retain.sampling.adaptive import TemperatureHead
    from retain.sampling.decoding import DecodingConfig
    from retain.sampling.evaluate import bio_task, measure, summary_task, world_names
    from retain.sampling.train import HeadConfig, head_fit, train_head
    from retain.world.io import load_world

    torch.set_num_threads(args.threads)
    base, out = Path(args.base), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world(base / "world")
    model, tok = load_model_and_tokenizer(base / "model")
    people = world.known
    train_people, eval_people = people[0::2], people[1::2][: args.people]
    heads, fits = {}, {}
    models = {"base": model}
    for mode in ("frozen", "joint"):
        d = out / f"head_{mode}"
        if not (d / "head.json").exists():
            m = model if mode == "frozen" else load_model(base / "model")
            t0 = time.perf_counter()
            head, log = train_head(m, tok, train_people, HeadConfig(mode=mode))
            if mode == "joint":
                m.save_pretrained(d / "model")
                tok.save_pretrained(d / "model")
            head.save(d, mode=mode, seconds=time.perf_counter() - t0, final_head_loss=log[-1]["head_loss"])
        m = model if mode == "frozen" else load_model(d / "model")
        heads[mode] = TemperatureHead.load(d)
        models["base" if mode == "frozen" else "joint"] = m
        fits[mode] = {**json.loads((d / "head.json").read_text()), **head_fit(m, heads[mode], tok, eval_people, 100, 7)}
    names = world_names(world)
    tasks = [bio_task(eval_people, tok, args.k), summary_task(world.sessions, tok, 2 * args.k)]
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else []
    done = {(r["family"], r["label"]) for r in results}
    for family, which, kw in progress(settings(out), desc="decodings"):
        cfg = DecodingConfig(**kw)
        if (family, cfg.label()) in done:
            continue
        head = heads["joint" if which == "joint" else "frozen"] if cfg.adaptive != "none" else None
        t0 = time.perf_counter()
        row = {"family": family, "label": cfg.label(), "model": which, "config": kw}
        for task in tasks:
            row[task.name] = average([measure(models[which], tok, task, cfg, names, seed=s, head=head)
                                      for s in range(args.seeds)])  # fmt: skip
        row["seconds"] = time.perf_counter() - t0
        results.append(row)
        atomic_write_json(path, results)
    plot(results, out / "decoding.png")
    write_section("decoding", "Decoding: fact accuracy against diversity", report(results, fits, args, out, tasks))


def report(results: list[dict], fits: dict, args, out: Path, tasks) -> str:
    summaries = tasks[1]
    lines = [f"Base model `{args.base}`. Biographies of {args.people} known people never used to train the heads "
             f"(prompt: BOS and the name), {args.k} samples each; summaries of the world's "
             f"{len(summaries.prompts) // summaries.k} sessions, {summaries.k} samples each; every number is the "
             f"mean over {args.seeds} sampling seeds (sd: standard deviation of fact accuracy across them). Facts "
             f"are read back with the world's templates (an unread sentence counts as wrong). Plot: "
             f"`{out}/decoding.png`. Adaptive heads map to [0.1, 1.5].", "",
             "| head | trained | seconds | held-out MSE | correlation with the label |",
             "| --- | --- | ---: | ---: | ---: |"]  # fmt: skip
    for mode, f in fits.items():
        what = ("head only, stop-gradient on the hidden state" if mode == "frozen"
                else "model and head (LM + head loss)")  # fmt: skip
        lines.append(f"| {mode} | {what} | {f['seconds']:.0f} | {f['mse']:.4f} | {f['corr']:.3f} |")
    lines += ["", "| decoding | model | bio fact acc | sd | bio unread | bio distinct-2 | bio template entropy | "
              "summary fact acc | summary distinct-2 | summary template entropy | s |",
              "| --- | --- |" + " ---: |" * 9]  # fmt: skip
    for r in results:
        b, s = r["biographies"], r["summaries"]
        lines.append(f"| {r['label']} | {r['model']} | {b['fact_acc']:.3f} | {b['fact_acc_sd']:.3f} | "
                     f"{b['unread']:.3f} | {b['distinct_2']:.3f} | {b['template_entropy']:.3f} | {s['fact_acc']:.3f} | "
                     f"{s['distinct_2']:.3f} | {s['template_entropy']:.3f} | {r['seconds']:.0f} |")  # fmt: skip
    lines += ["", "Against the fixed-temperature curve of the same model (fact accuracy minus the curve's at the "
              "same diversity; + is above the curve, 'outside' where the diversity lies beyond the curve's range):", "",
              "| head | task | vs curve at equal template entropy | vs curve at equal distinct-2 |",
              "| --- | --- | ---: | ---: |"]  # fmt: skip
    above: list[str] = []
    for r in results:
        if not r["family"].startswith("adaptive"):
            continue
        fams = ("greedy", "temperature") if r["model"] == "base" else ("temperature (joint model)",)
        curve_rows = sorted((x for x in results if x["family"] in fams),
                            key=lambda x: x["config"].get("temperature", 0))  # fmt: skip
        for task in ("biographies", "summaries"):
            cells = []
            for div in ("template_entropy", "distinct_2"):
                curve = [(x[task][div], x[task]["fact_acc"]) for x in curve_rows]
                y = interp(curve, r[task][div])
                cells.append("outside" if y is None else f"{r[task]['fact_acc'] - y:+.3f}")
            lines.append(f"| {r['family']} {r['config']['adaptive']} | {task} | {cells[0]} | {cells[1]} |")
            margins = [float(c) for c in cells if c != "outside"]
            if margins and min(margins) > 2 * r[task]["fact_acc_sd"]:
                above.append(f"{r['family']} {r['config']['adaptive']} on {task}")
    lines += [
        "",
        "Above the fixed-temperature curve on both diversity measures by more than twice the seeds' standard "
        f"deviation: {', '.join(above) if above else 'none'}.",
    ]
    ex = next(r for r in results if r["family"] == "adaptive frozen")
    lines += ["", f"Example ({ex['label']}, frozen head): {ex['biographies']['examples'][0]}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
