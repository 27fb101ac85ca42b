"""Many-shot in-context learning on the session stream: recall against the number of shots, per shot kind.

    python -m benchmarks.many_shot --base runs/base --out runs/many_shot
    python -m benchmarks.many_shot --base runs/base --shots 0,2,8,32 --budget 2048 --writer oracle

The `context` medium after the last write: the newest sessions that fit the budget next to k question-answer
shots about known people (many_shot), the model's own correct answers (reinforced), or the questions alone
(unsupervised); then the question. Shots take their tokens first, so at a fixed budget they displace
sessions. Recall is over every session's questions; "recall held" only over the sessions still in context.
Writes a plot and a section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.results import write_section

KINDS = ["many_shot", "reinforced", "unsupervised"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/base")
    ap.add_argument("--out", default="runs/many_shot")
    ap.add_argument("--shots", default="0,1,2,4,8")
    ap.add_argument("--writer", default="transcript", choices=["oracle", "transcript", "model"])
    ap.add_argument("--budget", type=int, default=240, help="context budget in tokens (sessions plus shots)")
    args = ap.parse_args()

    from retain.continual.loop import Suites, evaluate
    from retain.continual.stream import world_suites
    from retain.memory import MediumConfig, make_memory
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    base, out = Path(args.base), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world(base / "world")
    model, tok = load_model_and_tokenizer(base / "model")
    n = len(world.sessions)
    base_qs, skills, shots = world_suites(world, base_n=1, skill_n=1, seed=0)
    suites = Suites([s.questions for s in world.sessions[:n]], base_qs, skills, shots)
    materials = [make_writer(WriterConfig(kind=args.writer), model, tok)(s) for s in world.sessions]
    ks = [int(k) for k in args.shots.split(",")]
    rows = []
    for kind in KINDS:
        for k in ks:
            if k == 0 and kind != KINDS[0]:
                continue  # zero shots is one point, shared by every kind
            mem = make_memory(MediumConfig(kind="context", name=f"{kind}-{k}", budget_tokens=args.budget, shots=k,
                                           shot_kind=kind), model, tok, shot_pool=suites.shots)  # fmt: skip
            for m in materials:
                mem.write(m)
            ev = evaluate(mem, suites, batch_size=32)
            acc = sum(ev["sessions"]) / n
            held = len(mem.kept())
            acc_held = sum(ev["sessions"][n - held :]) / held if held else float("nan")
            rows.append({"kind": kind, "shots": k, "acc": acc, "acc_held": acc_held, "sessions_held": held,
                         "context_tokens": mem.held_tokens()})  # fmt: skip
            print(rows[-1], flush=True)
    (out / "many_shot.json").write_text(json.dumps(rows, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zero = next(r["acc_held"] for r in rows if r["shots"] == 0)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind in KINDS:
        pts = [(0, zero)] + [(r["shots"], r["acc_held"]) for r in rows if r["kind"] == kind and r["shots"] > 0]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=kind)
    ax.set(xscale="symlog", xlabel="shots in context", ylabel="recall on the sessions held in context", ylim=(0, 1.02),
           title=f"Many-shot ICL, {n} sessions in context ({args.writer})")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "many_shot.png", dpi=120)

    lines = ["| shot kind | shots | recall (all sessions) | recall held | sessions held | context tokens |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| {r['kind']} | {r['shots']} | {r['acc']:.3f} | {r['acc_held']:.3f} | {r['sessions_held']} | "
              f"{r['context_tokens']} |" for r in rows]  # fmt: skip
    body = (
        f"Base model `{base}`, writer `{args.writer}`, all {n} sessions in context (budget {args.budget} tokens), "
        f"then k shots about known people. Plot: `{out / 'many_shot.png'}`.\n\n" + "\n".join(lines)
    )
    write_section("many_shot", "Many-shot in-context learning on the session stream", body)


if __name__ == "__main__":
    main()
