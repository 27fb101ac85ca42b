"""How well self-study's questions cover a session, without training anything: for each distilled medium of a
config, the queries its first write would ask of every session (the bare model as teacher), and how many of
the session's own questions they cover: a question is covered when some query's answer contains its gold
answer (SQuAD-normalised, as whole words). The oracle medium (`queries: oracle`) met the targets on SmolLM2
(RESULTS `real_smollm2_write_oracle`), so this is the cheap judge of a query recipe before a full run.

    python -m benchmarks.study_queries --config configs/real/smollm2.yaml
    python -m benchmarks.study_queries --set 'media=[{name: q, kind: lora, objective: distill, queries: self_study}]'

Every session is asked by the bare model, where the run asks later sessions through the memory written so
far: the coverage of the first write exactly, an approximation of the later ones.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from benchmarks.results import write_section


def answer_of(query: str) -> str:
    """The answer a plain-text query gives (`Q: ...\\nA: <answer>`), or '' when it gives none."""
    return query.split("\nA:", 1)[1].split("\n", 1)[0].strip() if "\nA:" in query else ""


def covered(question, answers: list[str]) -> bool:
    """Whether some query answer contains one of the question's accepted answers."""
    from retain.eval.exact_match import grade

    return any(grade(a, question, "text")["contains"] for a in answers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/real/smollm2.yaml")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: study_queries_<config stem>)")
    ap.add_argument("--out", default=None, help="also write every query, per medium and session, to this JSON")
    args = ap.parse_args()

    from retain.config import load_config
    from retain.continual.loop import ContinualConfig, prepare
    from retain.memory import distill as D
    from retain.memory import make_memory
    from retain.memory.writers import make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.device import configure
    from retain.models.text import use_format
    from retain.runs.seed import derive_seed

    cfg = load_config(ContinualConfig, args.config, args.overrides)
    configure(cfg.device, cfg.precision)
    base, stream, fmt, media = prepare(cfg)
    media = [m for m in media if m.objective == "distill"]
    if not media:
        raise SystemExit("no distilled medium in the config: add one with objective: distill")
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    materials = [make_writer(cfg.writer, model, tok)(s) for s in stream.sessions]
    rows, asked = [], {}
    for m in media:
        memory = make_memory(m, load_model_and_tokenizer(base.model_dir)[0], tok, seed=cfg.seed)  # a fresh copy
        hits, total, distinct, n, seconds, per_session = 0, 0, 0, 0, 0.0, []
        for mat in materials:
            rng = random.Random(derive_seed(cfg.seed, "write", m.name, mat.session))  # as the write draws
            t0 = time.perf_counter()
            ids, _ = D.query_ids(m.queries, memory, mat, memory.teacher_context(mat), m.n_queries, rng)
            seconds += time.perf_counter() - t0
            queries = [tok.decode(q) for q in ids]
            asked.setdefault(m.name, {})[str(mat.session)] = queries
            answers = [answer_of(q) for q in queries]
            qs = mat.questions or []
            got = sum(covered(q, answers) for q in qs)
            hits, total = hits + got, total + len(qs)
            distinct, n = distinct + len(set(queries)), n + len(queries)
            per_session.append(f"{got}/{len(qs)}")
        rows.append(
            f"| {m.name} | {hits / max(total, 1):.2f} ({hits}/{total}) | {' '.join(per_session)} | "
            f"{n / len(materials):.0f} | {distinct / max(n, 1):.2f} | {seconds:.0f} |"
        )
    examples = "\n\n".join(
        f"`{name}`:\n\n" + "\n".join(f"    {q!r}" for q in by["0"][:6]) for name, by in asked.items()
    )
    body = (f"Base `{cfg.base}`, {len(materials)} sessions of `{cfg.data}`. A session question is covered when some "
            "query's answer contains its gold answer (SQuAD-normalised, whole words). Queries are asked by the bare "
            "model for every session.\n\n"
            "| medium | covered | per session | queries per session | distinct | seconds |\n"
            "| --- | ---: | --- | ---: | ---: | ---: |\n" + "\n".join(rows)
            + f"\n\nThe first queries on session 1:\n\n{examples}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(asked, indent=1))
    write_section(args.section or f"study_queries_{Path(args.config).stem}", "Self-study query coverage", body)


if __name__ == "__main__":
    main()
