"""The trained KV prefix alone: its two initialisations, and composition of two sessions' prefixes.

    python -m benchmarks.kv_prefix --base runs/base --out runs/kv_prefix

For each of the first `--sessions` sessions, a fresh `kv_prefix` medium is distilled (self_study) on that
session alone, once from its own KV cache (prefix_init session) and once from unrelated text (text), and
asked that session's questions. Then the session-init prefixes of sessions (1, 2), (3, 4), ... are
concatenated and asked both sessions' questions: composition keeps a session when its recall with the
pair is at least 0.8 of its recall with its own prefix alone. The pair is also written as one growing
memory (`blocks: per_session`: the second session's block distilled beside the frozen first, replaying its
queries), and read in context (both transcripts in the prompt), the reader's own limit. Routed by name:
the two prefixes trained apart, concatenated behind one sink, each question reading only the prefix whose
session names its person (`route: entity`), against the reader with both transcripts under `focus:
entity`. Writes results.json and a section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.results import write_section

KEEP = 0.8
MODES = {"composed": False, "shared sink": True}
"""How two prefixes trained apart are put side by side: as trained (two sinks, the second prefix at the
positions it was trained at), or with one shared sink and the second prefix's keys shifted to the positions
it takes."""
BESIDE = "written beside"
"""The second session's block written after the first's, which stays frozen (`blocks: per_session`)."""
ONE = "one prefix for both"
"""Both sessions written in turn into one prefix of P (`blocks: one`): half the bytes of two prefixes."""
ROUTED = "routed by name"
"""The two prefixes trained apart, one shared sink, each question reading the prefixes whose sessions name
a person it names (`route: entity`)."""


def ratios(got: list[float], ref: list[float]) -> list[float]:
    """Each session's recall kept: got / ref (nan where the reference is 0)."""
    return [c / a if a else float("nan") for c, a in zip(got, ref)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/base")
    ap.add_argument("--out", default="runs/kv_prefix")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=32, help="prefix length P")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=2e-2)
    ap.add_argument("--focus", choices=("none", "entity"), default="entity", help="distill teacher focus")
    ap.add_argument("--cue", choices=("none", "sentence", "alone"), default="sentence", help="self-study cue")
    ap.add_argument("--base-replay", type=float, default=0.0, help="fraction of each batch on base knowledge")
    ap.add_argument("--base-study", type=float, default=1.0, help="of those, the fraction self-studied")
    ap.add_argument("--replay", type=float, default=0.5, help="written beside: earlier session's share of a batch")
    ap.add_argument("--base-queries", type=int, default=512, help="base-knowledge texts distilled")
    args = ap.parse_args()

    import torch

    from retain.continual.rehearsal import Rehearsal
    from retain.eval.exact_match import exact_match
    from retain.memory import MediumConfig, make_memory
    from retain.memory.kv_prefix import compose
    from retain.memory.names import index_names
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    torch.set_num_threads(2)
    base, out = Path(args.base), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world(base / "world")
    model, tok = load_model_and_tokenizer(base / "model")
    materials = [make_writer(WriterConfig(kind="transcript"), model, tok)(s) for s in world.sessions[: args.sessions]]

    def recall(mem, session) -> float:
        qs = session.questions
        return sum(exact_match(p, q.answer) for p, q in zip(mem.answer(qs), qs)) / len(qs)

    def fresh(init: str, **kw):
        m, _ = load_model_and_tokenizer(base / "model")
        cfg = MediumConfig(kind="kv_prefix", name=f"kv-{init}", **kw, prompt_tokens=args.tokens, prefix_init=init,
                           objective="distill", queries="self_study", steps=args.steps, lr=args.lr,
                           focus=args.focus, cue=args.cue, base_replay=args.base_replay,
                           base_study=args.base_study, base_queries=args.base_queries)  # fmt: skip
        mem = make_memory(cfg, m, tok, base_text=Rehearsal(world))
        mem.base_teachers = base_teachers  # what the bare model teaches is the same for every fresh medium
        return mem

    def in_context(written, focus="none"):
        mem = make_memory(MediumConfig(kind="context", focus=focus), model, tok)
        for m in written:
            mem.write(m)
        return mem

    t0 = time.perf_counter()
    alone, prefixes = {"session": [], "text": []}, []
    base_teachers: list = []
    for m in materials:
        for init in ("session", "text"):
            mem = fresh(init)
            mem.write(m)
            base_teachers = mem.base_teachers
            alone[init].append(recall(mem, world.sessions[m.session]))
            if init == "session":
                prefixes.append(mem.prefix())
    pairs = []
    holder, router = fresh("session"), fresh("session", route="entity")
    for a in range(0, len(materials) - 1, 2):
        row = {"sessions": [a + 1, a + 2], "alone": [alone["session"][a], alone["session"][a + 1]]}
        for mode, kw in MODES.items():
            holder.load(compose(prefixes[a], prefixes[a + 1], model=holder.model if kw else None, shared_sink=kw))
            row[mode] = [recall(holder, world.sessions[a]), recall(holder, world.sessions[a + 1])]
        router.load(compose(prefixes[a], prefixes[a + 1], model=router.model, shared_sink=True),
                    names=[index_names(m.transcript) for m in materials[a : a + 2]])  # fmt: skip
        row[ROUTED] = [recall(router, world.sessions[a]), recall(router, world.sessions[a + 1])]
        for mode, blocks in ((BESIDE, "per_session"), (ONE, "one")):  # the pair written in turn, with replay
            grown = fresh("session", blocks=blocks, replay=args.replay)
            for m in materials[a : a + 2]:
                grown.write(m)
            row[mode] = [recall(grown, world.sessions[a]), recall(grown, world.sessions[a + 1])]
        # the reader's own limit: the model with one session's transcript in context, and with both
        row["context alone"] = [recall(in_context(materials[i : i + 1]), world.sessions[i]) for i in (a, a + 1)]
        both = in_context(materials[a : a + 2])
        row["context together"] = [recall(both, world.sessions[i]) for i in (a, a + 1)]
        both = in_context(materials[a : a + 2], focus="entity")
        row["context focused"] = [recall(both, world.sessions[i]) for i in (a, a + 1)]
        pairs.append(row)
    seconds = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps({"alone": alone, "pairs": pairs, "seconds": seconds}, indent=2))

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    rows = [
        "| session | recall, prefix from its own cache | recall, prefix from unrelated text |",
        "| ---: | ---: | ---: |",
    ]
    rows += [f"| {i + 1} | {s:.2f} | {t:.2f} |" for i, (s, t) in enumerate(zip(alone["session"], alone["text"]))]
    rows += [f"| mean | {mean(alone['session']):.3f} | {mean(alone['text']):.3f} |"]
    kept = {mode: [] for mode in (*MODES, BESIDE, ONE, ROUTED)}
    comp = [
        "| sessions | alone | concatenated as trained | one shared sink, second prefix shifted | second block "
        "written beside the first | one prefix for both, written in turn | concatenated, routed by name |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in pairs:
        cells = []
        for mode in kept:
            k = ratios(p[mode], p["alone"])
            kept[mode] += [x for x in k if x == x]
            cells.append(f"{p[mode][0]:.2f}, {p[mode][1]:.2f} (kept {k[0]:.2f}, {k[1]:.2f})")
        comp.append(f"| {p['sessions'][0]} + {p['sessions'][1]} | {p['alone'][0]:.2f}, {p['alone'][1]:.2f} | "
                    f"{' | '.join(cells)} |")  # fmt: skip
    ctx = [
        "| sessions | one session in context | both in context | kept | both, focus entity | kept |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ctx_kept, focus_kept = [], []
    for p in pairs:
        k = ratios(p["context together"], p["context alone"])
        f = ratios(p["context focused"], p["context alone"])
        ctx_kept += [x for x in k if x == x]
        focus_kept += [x for x in f if x == x]
        ctx.append(f"| {p['sessions'][0]} + {p['sessions'][1]} | {p['context alone'][0]:.2f}, "
                   f"{p['context alone'][1]:.2f} | {p['context together'][0]:.2f}, {p['context together'][1]:.2f} "
                   f"| {k[0]:.2f}, {k[1]:.2f} | {p['context focused'][0]:.2f}, {p['context focused'][1]:.2f} "
                   f"| {f[0]:.2f}, {f[1]:.2f} |")  # fmt: skip
    verdict = [f"- {mode}: keeps >= {KEEP} of each session's recall: on the mean "
               f"{'met' if mean(kept[mode]) >= KEEP else 'not met'} ({mean(kept[mode]):.2f}), for every session "
               f"{'met' if min(kept[mode]) >= KEEP else 'not met'} (lowest {min(kept[mode]):.2f})"
               for mode in kept]  # fmt: skip
    body = (f"Base model `{args.base}`; one fresh prefix of P={args.tokens} per session, distilled with self-study "
            f"({args.steps} steps, lr {args.lr}, focus {args.focus}, cue {args.cue}, base replay {args.base_replay} "
            f"of {args.base_queries} texts, {args.base_study:.0%} self-studied), asked that session's questions. "
            f"{seconds:.0f} s.\n\n"
            + "\n".join(rows) + "\n\nTwo sessions' prefixes (session init) concatenated, asked both sessions' "
            "questions; position 0 of every prefix is the frozen BOS sink, so the second can drop its own and "
            "have its keys re-rotated (RoPE) to the positions it takes. Written beside: the second session's block "
            f"is distilled after the first's, which stays frozen, with {args.replay:.0%} of each batch replaying the "
            "first session's queries (`blocks: per_session`; 2P - 1 positions). One prefix for both: the pair written "
            "in turn into one prefix of P with the same replay (`blocks: one`; half the bytes). Kept is against each "
            "session's prefix trained alone. Routed by name: the two prefixes trained apart behind one sink, "
            "each question reading only the prefix whose session names a person the question names "
            "(`route: entity`), starting right after it:\n\n"
            + "\n".join(comp) + "\n\n" + "\n".join(verdict) + "\n\nThe reader's own limit: the model with the "
            "transcripts in its context (no prefix), one session or both, asked each session's questions (mean kept "
            f"{mean(ctx_kept):.2f}); and both under `focus: entity`, each question seeing only the sentences "
            f"naming its person (mean kept {mean(focus_kept):.2f}):\n\n" + "\n".join(ctx))  # fmt: skip
    write_section("kv_prefix", "KV prefix: initialisation and composition", body)


if __name__ == "__main__":
    main()
