"""`retain run`: the continual loop. Sessions arrive in order; each medium writes each session's material
and is evaluated after every write on every session's questions, on base knowledge and on a held-out skill.

    retain run --config configs/continual.yaml --out runs/continual
    retain run --out runs/continual --resume        # media already finished are read back, not rerun

For each medium, top to bottom: fresh copy of the base model -> evaluate (R0) -> for each session: write,
evaluate (row i of R) -> metrics. Every medium sees the same materials, questions and base model.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from retain.config import from_dict, read_yaml
from retain.continual.rehearsal import Rehearsal
from retain.errors import RetainError
from retain.eval import continual as CL
from retain.eval.exact_match import exact_match
from retain.fermi.arch import from_hf_config
from retain.fermi.formulas import kv_bytes_per_token
from retain.memory import MediumConfig, Memory, make_memory
from retain.memory.writers import WriterConfig, make_writer
from retain.models.build import load_model_and_tokenizer
from retain.runs.files import atomic_write_json, read_json
from retain.runs.progress import progress
from retain.runs.rundir import RunDir, base_run
from retain.runs.seed import derive_seed, seed_everything
from retain.world import examples as X
from retain.world.io import load_world
from retain.world.world import ATTRIBUTE_SETS, Question, World


@dataclass
class EvalConfig:
    """What is asked after every write."""

    base_n: int = 100
    """Closed-book recall questions on known people (facts no session updates): base knowledge."""
    skill_n: int = 60
    """Open-book questions on fresh people (biography in context): the held-out reading skill."""
    batch_size: int = 64
    """Prompts per generation batch."""


@dataclass
class ContinualConfig:
    """A continual run: which base model, which sessions, which writer, which media."""

    name: str = "continual"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    seed: int = 0
    """Seed of the writes (batch sampling, soft-prompt init) and of the evaluation subsets."""
    base: str = "runs/base"
    """A pretraining run directory (its model/ and world/), as `retain pretrain` writes it."""
    sessions: int = 10
    """The first N sessions of the world's stream, in order."""
    writer: WriterConfig = field(default_factory=WriterConfig)
    media: list[MediumConfig] = field(default_factory=lambda: [MediumConfig(kind="none"),
                                                               MediumConfig(kind="context"), MediumConfig()])
    """The media run side by side on the same materials."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    liti: list[float] = field(default_factory=list)
    """After the last write, each lora and full medium is moved towards the base model by LiTI
    (theta_init + eta (theta - theta_init)) at each of these eta and evaluated: recall against base knowledge."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        names = [m.name for m in self.media]
        if len(set(names)) != len(names):
            raise ValueError(f"media names must differ, got {names}; set media[i].name")
        if self.sessions < 1:
            raise ValueError(f"sessions must be at least 1, got {self.sessions}")


@dataclass
class Suites:
    """The fixed questions of a run."""

    sessions: list[list[Question]]
    base: list[Question]
    skills: list[tuple[str, Question]]
    shots: list[Question]
    """Closed-book questions on known people of the QA split, for many-shot ICL (disjoint from `base`)."""


def build_suites(world: World, n_sessions: int, cfg: EvalConfig, seed: int) -> Suites:
    updated = world.updated_facts()
    rng = random.Random(derive_seed(seed, "continual", "base"))
    base = [q for _, q in X.closed_book_items(world.known, world, rng, two_hop=False)
            if q.kind == "recall" and (q.entity, q.attribute) not in updated]  # fmt: skip
    base = random.Random(derive_seed(seed, "continual", "base_subset")).sample(base, min(cfg.base_n, len(base)))
    skills = X.open_book_items(world.split("eval"), world, random.Random(derive_seed(seed, "continual", "skill")))
    skills = [it for it in skills if it[1].kind == "recall"]
    skills = random.Random(derive_seed(seed, "continual", "skill_subset")).sample(skills, min(cfg.skill_n, len(skills)))
    taken = {q.text for q in base}
    shot_rng = random.Random(derive_seed(seed, "shots"))
    shots = [q for _, q in X.closed_book_items(world.split("known_qa"), world, shot_rng, two_hop=False)
             if q.kind == "recall" and (q.entity, q.attribute) not in updated and q.text not in taken]  # fmt: skip
    return Suites([s.questions for s in world.sessions[:n_sessions]], base, skills, shots)


def fact_bits(world: World, q: Question) -> float:
    """Bits of the fact a recall or update question asks for (log2 of its choice set)."""
    n = len(world.known) if q.attribute == "mentor" else len(ATTRIBUTE_SETS.get(q.attribute, []))
    return math.log2(n) if n > 1 and q.kind in ("recall", "update") else 0.0


def check_stream(world: World, n: int) -> None:
    """One-line errors for a stream the loop cannot score: too few sessions, a session without transcript
    text, or one without questions (its column of R would be empty). A context budget smaller than a session
    is not an error: the context medium then holds nothing and answers closed-book (docs/memory.md)."""
    if n > len(world.sessions):
        raise RetainError(f"sessions={n} but the world holds {len(world.sessions)}; lower sessions")
    for s in world.sessions[:n]:
        if not s.transcript.strip():
            raise RetainError(f"session {s.index + 1} of the world has an empty transcript; regenerate the world")
        if not s.questions:
            raise RetainError(f"session {s.index + 1} of the world has no questions, so its recall is undefined; "
                              "regenerate the world or lower sessions")  # fmt: skip


def evaluate(memory: Memory, suites: Suites, batch_size: int) -> dict[str, Any]:
    """Accuracy on every session's questions, on base knowledge and on the skill; hits per session question."""
    flat = [q for qs in suites.sessions for q in qs]
    t0 = time.perf_counter()
    preds = memory.answer(flat, batch_size=batch_size)
    hits = [exact_match(p, q.answer) for p, q in zip(preds, flat)]
    per_session, k = [], 0
    for qs in suites.sessions:
        per_session.append(sum(hits[k : k + len(qs)]) / len(qs))
        k += len(qs)
    base = memory.answer(suites.base, contexts=[None] * len(suites.base), batch_size=batch_size)
    base_hits = [exact_match(p, q.answer) for p, q in zip(base, suites.base)]
    skill = memory.answer([q for _, q in suites.skills], contexts=[c for c, _ in suites.skills], batch_size=batch_size)
    skill_hits = [exact_match(p, q.answer) for p, (_, q) in zip(skill, suites.skills)]
    return {
        "sessions": per_session,
        "hits": hits,
        "base_acc": sum(base_hits) / max(len(base_hits), 1),
        "base_hits": base_hits,
        "base_answers": base,
        "skill_acc": sum(skill_hits) / max(len(skill_hits), 1),
        "answer_seconds": time.perf_counter() - t0,
    }


def run_medium(cfg: ContinualConfig, mcfg: MediumConfig, materials, suites: Suites, world: World, run: RunDir) -> dict:
    """Write every session into one medium, evaluating after each write; returns the medium's record."""
    model, tok = load_model_and_tokenizer(Path(cfg.base) / "model")
    seed_everything(derive_seed(cfg.seed, "medium", mcfg.name))
    rehearsal = Rehearsal(world)
    memory = make_memory(mcfg, model, tok, base_text=rehearsal, shot_pool=suites.shots, seed=cfg.seed)
    before = evaluate(memory, suites, cfg.eval.batch_size)
    rows, evals, costs = [], [], []
    for m in progress(materials, desc=f"{mcfg.name}", leave=False):
        rehearsal.upto(m.session)  # replay knows the sessions read so far, not the later ones
        cost = memory.write(m)
        ev = evaluate(memory, suites, cfg.eval.batch_size)
        rows.append(ev["sessions"])
        evals.append(ev)
        costs.append(cost)
        run.log({"medium": mcfg.name, "session": m.session, "write_seconds": cost.seconds, "write_tokens": cost.tokens,
                 "recall_just_written": ev["sessions"][m.session], "base_acc": ev["base_acc"],
                 "skill_acc": ev["skill_acc"], "nbytes": memory.nbytes()})  # fmt: skip
    front = liti_front(memory, cfg.liti, suites, cfg.eval.batch_size) if mcfg.kind in ("lora", "full") else []
    session_tokens = sum(m.session_tokens for m in materials)
    final = evals[-1]
    flat = [q for qs in suites.sessions for q in qs]
    bits = sum(fact_bits(world, q) for q, h in zip(flat, final["hits"]) if h)
    nbytes, params = memory.nbytes(), memory.params()
    return {
        "name": mcfg.name, "kind": mcfg.kind, "config": {k: getattr(mcfg, k) for k in mcfg.__dataclass_fields__},
        "R0": before["sessions"], "R": rows,
        "base_curve": [before["base_acc"]] + [e["base_acc"] for e in evals],
        "skill_curve": [before["skill_acc"]] + [e["skill_acc"] for e in evals],
        "acc": CL.acc(rows), "bwt": CL.bwt(rows), "fwt": CL.fwt(rows, before["sessions"]),
        "forgetting": CL.forgetting(rows), "just_written": CL.just_written(rows),
        "base_acc": final["base_acc"], "base_acc_drop": before["base_acc"] - final["base_acc"],
        "hits": final["hits"],  # per session question (in session order), right after the last write
        "base_lost": [{"question": q.text, "answer": q.answer, "now": a}
                      for q, h0, h, a in zip(suites.base, before["base_hits"], final["base_hits"], final["base_answers"])
                      if h0 and not h],
        "skill_acc": final["skill_acc"], "skill_acc_drop": before["skill_acc"] - final["skill_acc"],
        "nbytes": nbytes, "bytes_per_token": nbytes / session_tokens, "params": params,
        "bits": bits, "bits_per_param": bits / params if params else None,
        "write_seconds": sum(c.seconds for c in costs), "write_tokens": sum(c.tokens for c in costs),
        "answer_seconds": sum(e["answer_seconds"] for e in evals),
        "liti": front, "svd_errors": getattr(memory, "svd_errors", []),
    }  # fmt: skip


def liti_front(memory, etas: list[float], suites: Suites, batch_size: int) -> list[dict[str, float]]:
    """Recall over every session and base-knowledge accuracy of the final memory moved towards the base
    model by LiTI at each eta: the trade-off front between what was written and what was known."""
    front = []
    for eta in progress(etas, desc="LiTI", leave=False):
        with memory.liti(eta):
            ev = evaluate(memory, suites, batch_size)
        front.append({"eta": eta, "acc": CL.acc([ev["sessions"]]),
                      "base_acc": ev["base_acc"], "skill_acc": ev["skill_acc"]})  # fmt: skip
    return front


def continual(cfg: ContinualConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every medium of `cfg` over the session stream; writes summary.json, report.md and plots."""
    base = base_run(cfg.base)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per medium is noise
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b")
    if cfg.writer.kind == "model" and cfg.writer.decoding.adaptive != "none":
        from retain.sampling import TemperatureHead

        TemperatureHead.load(cfg.writer.decoding.head)  # a missing head fails here, before the run dir exists
    world = load_world(base / "world")
    check_stream(world, cfg.sessions)  # bad sessions and media fail before the run directory exists
    model_config = AutoConfig.from_pretrained(base / "model")
    for m in cfg.media:
        m.check_model(model_config)
    run = RunDir.open(cfg.name, out, resume)
    if resume:
        cfg = from_dict(ContinualConfig, read_yaml(run / "config.yaml"))
        check_stream(world, cfg.sessions)
    else:
        run.write_config(cfg)
    model, tok = load_model_and_tokenizer(base / "model")
    writer = make_writer(cfg.writer, model, tok)
    materials = [writer(s) for s in world.sessions[: cfg.sessions]]
    hidden = {"facts": None, "updates": None, "questions": None, "world_session": None}  # the world's
    atomic_write_json(run / "materials.json", [m.__dict__ | hidden for m in materials])
    del model
    suites = build_suites(world, cfg.sessions, cfg.eval, cfg.seed)
    results = {}
    for mcfg in cfg.media:
        path = run / "media" / f"{mcfg.name}.json"
        if path.exists():
            results[mcfg.name] = read_json(path)
            continue
        print(f"medium {mcfg.name}: writing {len(materials)} sessions")
        run.keep_metrics(lambda r, name=mcfg.name: r.get("medium") != name)  # records of an interrupted try
        results[mcfg.name] = run_medium(cfg, mcfg, materials, suites, world, run)
        atomic_write_json(path, results[mcfg.name])
    summary = summarize(results, base)
    run.write_summary(summary)
    from retain.continual.report import write_report

    write_report(run, cfg, results, summary)
    return {**summary, "report": str(run / "report.md")}


def summarize(results: dict[str, dict], base: Path) -> dict[str, Any]:
    """Per medium, the headline numbers, and how they compare with keeping every session in context: its
    KV cache costs `kv_bytes_per_token` whatever the budget, and its recall is the best context medium's (with
    retrieval, if one retrieves: the strictest in-context reference)."""
    keys = ["acc", "bwt", "fwt", "forgetting", "just_written", "base_acc", "base_acc_drop", "skill_acc",
            "bytes_per_token", "bits_per_param", "params", "nbytes", "write_seconds", "answer_seconds"]  # fmt: skip
    kv = kv_bytes_per_token(from_hf_config(AutoConfig.from_pretrained(base / "model").to_dict()))
    out: dict[str, Any] = {"kv_bytes_per_token": kv,
                           "media": {n: {"kind": r["kind"], **{k: r[k] for k in keys}} for n, r in results.items()}}
    ctx = max((r for r in results.values() if r["kind"] == "context"), key=lambda r: r["acc"], default=None)
    for r in out["media"].values():
        r["bytes_ratio_vs_kv"] = kv / r["bytes_per_token"] if r["bytes_per_token"] else None
        r["recall_vs_context"] = r["acc"] / ctx["acc"] if ctx and ctx["acc"] else None
    return out


def main(cfg: ContinualConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain run`."""
    s = continual(cfg, out, resume)
    width = max(len(n) for n in s["media"])
    for name, m in s["media"].items():
        drop = 0.0 - m["base_acc_drop"] * 100 + 0.0  # + 0.0 turns -0.0 into 0.0
        print(f"  {name:{width}s} ACC {m['acc']:.3f}  BWT {m['bwt']:+.3f}  base {drop:+5.1f} pt  "
              f"{m['bytes_per_token']:7.1f} B/token  write {m['write_seconds']:3.0f} s")
    print(f"report: {s['report']}")
