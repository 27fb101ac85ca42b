"""Is a write's base-knowledge drop its direction or its size? Writes one LoRA medium of a real-model config over
its sessions (as `retain run` writes it: same seeds, same queries), then asks the kept base-probe questions of
three adapters of the same size per module:

- the written one (B A as trained);
- the negated one (-B A: the same subspace, the opposite way);
- random ones with the written singular values but random singular vectors (`--draws` of them).

If random updates of the written size lose as much general knowledge as the written one, the drop is the base
model's sensitivity to any update that large, and only a smaller update (or a less sensitive base) lowers it;
if they lose much less, the write points where general knowledge lives, and a constraint on its direction is
what would help. Drops are given on the kept probe, on its known part, and on its firm part (the bare model's
first-token margin >= 0.1, benchmarks.probe_margin).

    python -m benchmarks.write_control --set seed=1 --out runs/write-control-seed1

Writes its section of docs/RESULTS.md (default: write_control_seed<seed>). The run directory keeps the probe draw,
the replay texts and the written adapter (written.safetensors), so a second call with the same --out reads them
back instead of writing again.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.results import resumable, write_section

KEYS = ("kept", "known", "firm")


def lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and "default" in m.lora_A]


def updates(model) -> list:
    """Per adapted module, its update scaling * B A (fp32, detached)."""
    return [m.scaling["default"] * (m.lora_B["default"].weight.float() @ m.lora_A["default"].weight.float()).detach()
            for m in lora_layers(model)]  # fmt: skip


def set_updates(model, deltas: list) -> None:
    """Set each adapted module's B, A so that scaling * B A is its delta (rank preserved, zero-padded)."""
    import torch

    with torch.no_grad():
        for m, d in zip(lora_layers(model), deltas):
            A, B, r = m.lora_A["default"].weight, m.lora_B["default"].weight, m.lora_A["default"].weight.shape[0]
            U, S, Vh = torch.linalg.svd(d, full_matrices=False)
            B.copy_((U[:, :r] * S[:r]) / m.scaling["default"])
            A.copy_(Vh[:r])


def random_like(delta, gen):
    """A delta with `delta`'s singular values and random orthonormal singular vectors."""
    import torch

    _, S, _ = torch.linalg.svd(delta, full_matrices=False)
    r = int((S > S[0] * 1e-6).sum()) if S[0] > 0 else 0
    U, _ = torch.linalg.qr(torch.randn(delta.shape[0], r, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(delta.shape[1], r, generator=gen))
    return (U * S[:r]) @ V.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/real/smollm2.yaml")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--medium", default="lora-distill-cloze-forward", help="the LoRA medium of the config to write")
    ap.add_argument("--draws", type=int, default=3, help="random updates of the written size")
    ap.add_argument("--scales", nargs="+", type=float, default=[1.0], help="also scale every singular value by these")
    ap.add_argument("--out", required=True, help="a run directory (reused when it exists)")
    ap.add_argument("--section", default=None)
    args = ap.parse_args()

    import torch

    from benchmarks.probe_margin import THIN, margins
    from retain.config import load_config
    from retain.continual.loop import ContinualConfig, answers, evaluate, fixed_questions, prepare
    from retain.eval.exact_match import grade
    from retain.memory import make_memory
    from retain.memory.writers import make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.device import configure
    from retain.models.text import use_format
    from retain.runs.progress import progress
    from retain.runs.rundir import RunDir
    from retain.runs.seed import derive_seed, seed_everything

    cfg = load_config(ContinualConfig, args.config, args.overrides)
    mcfg = next((m for m in cfg.media if m.name == args.medium), None)
    if mcfg is None or mcfg.kind != "lora":
        raise SystemExit(f"--medium {args.medium}: not a LoRA medium of {args.config}; "
                         f"name one of {[m.name for m in cfg.media if m.kind == 'lora']}")  # fmt: skip
    cfg.media = [mcfg]
    configure(cfg.device, cfg.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base, stream, fmt, _ = prepare(cfg)
    if base.world is not None:
        raise SystemExit(f"{cfg.base}: a world model has no base probe; use a plain model folder")
    out = Path(args.out)
    run = RunDir.open(cfg.name, out, resume=(out / "config.yaml").exists())
    if not (out / "config.yaml").exists():
        run.write_config(cfg)
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    writer = make_writer(cfg.writer, model, tok)
    materials = [writer(s) for s in stream.sessions]
    suites, rehearsal = fixed_questions(cfg, base, stream, model, tok, run)
    del model

    # as retain.continual.loop.run_media writes a medium alone: the same seeds, so the same queries and batches
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    seed_everything(derive_seed(cfg.seed, "medium", mcfg.name))
    rehearsal.upto(-1)
    memory = make_memory(mcfg, model, tok, base_text=rehearsal, shot_pool=suites.shots, seed=cfg.seed)
    bs = cfg.eval.batch_size

    def hits() -> list[int]:
        got = answers(memory, suites.base, [None] * len(suites.base), bs)
        return [grade(p, q, suites.base_grading)["em"] for p, q in zip(got, suites.base)]

    before = hits()
    if sum(before) != len(before):
        print(f"note: the bare model now answers {sum(before)} of the {len(before)} kept questions")
    saved, lora = out / "written.safetensors", {n: p for n, p in memory.model.named_parameters() if "lora_" in n}
    if saved.exists():  # written by an earlier call: read back, not written again
        from safetensors.torch import load_file

        with torch.no_grad():
            for n, t in load_file(saved).items():
                lora[n].copy_(t)
        seconds = json.loads((out / "written.json").read_text())["write_seconds"]
    else:
        from safetensors.torch import save_file

        seconds = 0.0
        with resumable(out):
            for m in progress(materials, desc=mcfg.name):
                rehearsal.upto(m.session)
                seconds += memory.write(m).seconds
        save_file({n: p.detach().contiguous() for n, p in lora.items()}, saved)
        (out / "written.json").write_text(json.dumps({"write_seconds": seconds}))
    final = evaluate(memory, suites, bs)
    written = updates(memory.model)
    margin = margins(out)
    firm = [margin.get(q.text, 0.0) >= THIN for q in suites.base]  # not a near tie
    known = suites.known or [False] * len(suites.base)

    def drops(h: list[int]) -> dict[str, float]:
        def on(mask):
            idx = [i for i, keep in enumerate(mask) if keep]
            if not idx:
                return float("nan")
            return 100 * (sum(h[i] for i in idx) - sum(before[i] for i in idx)) / len(idx)

        return {"kept": on([True] * len(h)), "known": on(known), "firm": on(firm)}

    def mean_drops(ds: list[dict]) -> dict[str, float]:
        return {k: statistics.mean(d[k] for d in ds) for k in KEYS}

    rows = {"written": drops(final["base_hits"])}
    # the same product B A through other factors: what rounding alone flips (under bf16 the factors matter)
    set_updates(memory.model, written)
    refactored = hits()
    rows["written, refactored"] = drops(refactored)
    set_updates(memory.model, [-d for d in written])
    rows["negated"] = drops(hits())
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "write_control"))
    draws = []
    for _ in progress(range(args.draws), desc="random updates"):
        set_updates(memory.model, [random_like(d, gen) for d in written])
        draws.append(drops(hits()))
    # the size a write may have: the written update and random ones, every singular value scaled by `scale`
    sizes = []
    for scale in progress([x for x in args.scales if x != 1], desc="sizes"):
        set_updates(memory.model, [scale * d for d in written])
        ev = evaluate(memory, suites, bs)
        scaled = []
        for _ in range(args.draws):
            set_updates(memory.model, [scale * random_like(d, gen) for d in written])
            scaled.append(drops(hits()))
        sizes.append({"scale": scale, "em": statistics.mean(ev["sessions"]), "written": drops(ev["base_hits"]),
                      "random": mean_drops(scaled)})  # fmt: skip
    for i, d in enumerate(draws):
        rows[f"random {i + 1}"] = d
    rand = mean_drops(draws) if draws else None
    norms = [float(d.norm()) for d in written]
    flips = sum(a != b for a, b in zip(refactored, final["base_hits"]))
    em = statistics.mean(final["sessions"])
    if draws:
        sizes.append({"scale": 1.0, "em": em, "written": rows["written"], "random": rand})
    sizes.sort(key=lambda r: r["scale"])
    summary = {"rows": rows, "random_mean": rand, "em": final["sessions"], "write_seconds": seconds, "flips": flips,
               "sizes": sizes,
               "kept": len(before), "known": sum(known), "firm": sum(firm),
               "update_norm_median": statistics.median(norms)}  # fmt: skip
    (out / "write_control.json").write_text(json.dumps(summary, indent=1))

    lines = ["| adapter (same singular values per module) | kept probe | known | firm (margin >= 0.1) |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| {n} | {r['kept']:+.1f} pt | {r['known']:+.1f} pt | {r['firm']:+.1f} pt |" for n, r in rows.items()]
    if rand:
        lines.append(f"| random, mean of {len(draws)} | {rand['kept']:+.1f} pt | {rand['known']:+.1f} pt | "
                     f"{rand['firm']:+.1f} pt |")  # fmt: skip
    if len(sizes) > 1:
        lines += ["", "Every singular value of every module scaled (the written update moved towards the base, as LiTI "
                  f"moves it, and random updates of the scaled spectrum, mean of {len(draws)} draws):", "",
                  "| scale | written: EM | " + " | ".join(f"{w}: {k}" for w in ("written", "random") for k in KEYS)
                  + " |", "| ---: |" + " ---: |" * 7]  # fmt: skip
        lines += [f"| {r['scale']:g} | {r['em']:.3f} | "
                  + " | ".join(f"{r[w][k]:+.1f} pt" for w in ("written", "random") for k in KEYS)
                  + " |" for r in sizes]  # fmt: skip
    body = (f"`{args.config}` with {' '.join(args.overrides) or 'no overrides'}: medium `{mcfg.name}` written over "
            f"{len(materials)} sessions ({seconds:.0f} s; EM after the last write {em:.3f}, mean over sessions), "
            f"then the kept base-probe questions ({len(before)}; {sum(known)} known, {sum(firm)} firm) asked of "
            "adapters with the written update's singular values in every module: the written one, the same product "
            f"B A through its SVD factors (under bf16 other factors round otherwise: {flips} answers differ), its "
            f"negation, and {len(draws)} with random singular vectors. Run directory `{out}`.\n\n")  # fmt: skip
    body += "\n".join(lines)
    section = args.section or f"write_control_seed{cfg.seed}"
    write_section(section, f"The base drop of a write against random updates of its size (seed {cfg.seed})", body)
    print(body)


if __name__ == "__main__":
    main()
