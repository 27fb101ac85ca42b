"""`retain run`: the continual loop. Sessions arrive in order; each medium writes each session's material
and is evaluated after every write on every session's questions, on base knowledge and (on the world) on a
held-out skill.

    retain run configs/continual.yaml --out runs/continual
    retain run --out runs/continual --resume        # the run's own config; finished media are read back
    retain run configs/real/smollm2.yaml --set data=my_sessions.jsonl   # your sessions, a real model
    torchrun --nproc_per_node 2 -m retain run configs/distill.yaml      # the writes' batches over 2 ranks

For each medium, top to bottom: fresh copy of the base model -> evaluate (R0) -> for each session: write,
evaluate (row i of R) -> metrics. Every medium sees the same materials, questions and base model. The base
is a pretraining run (the world) or any local causal LM folder with sessions from a file
(`retain.continual.stream`).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from retain.config import resume_config
from retain.continual.rehearsal import Rehearsal, TextRehearsal, own_texts
from retain.continual.stream import Base, Stream, build_stream, check_lengths, resolve_base, unknown_note
from retain.errors import RetainError
from retain.eval import continual as CL
from retain.eval.exact_match import grade
from retain.fermi.arch import from_hf_config
from retain.fermi.formulas import kv_bytes_per_token
from retain.memory import MediumConfig, Memory, make_memory
from retain.memory.base import ANSWER_SPANS, APPLIES, WriteCost
from retain.memory.stacked import Stack, StackedLora, stack_key, write_stacked
from retain.memory.writers import WriterConfig, make_writer
from retain.models.build import load_model_and_tokenizer, load_tokenizer, model_config
from retain.models.device import configure, device
from retain.models.text import TextFormat, text_format, use_format
from retain.runs import distributed
from retain.runs.files import atomic_write_json, read_json
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed, seed_everything
from retain.world.world import ATTRIBUTE_SETS, Question, World


@dataclass
class EvalConfig:
    """What is asked after every write."""

    base_n: int = 100
    """Base-knowledge questions (closed-book): recall on the world's known people (facts no session updates),
    or on a plain model the probe's general questions, of which those it answers right before any write are kept."""
    skill_n: int = 60
    """Open-book questions on fresh people (biography in context): the held-out reading skill (world only)."""
    batch_size: int = 64
    """Prompts per generation batch."""
    shots: int | None = None
    """Question-answer pairs on general knowledge shown before every question of every medium (the answer
    format a pretrained model needs to answer in a few words). None: 0 in world style, 4 otherwise."""
    max_new_tokens: int | None = None
    """Most tokens of an answer. None: 8 in world style, 24 otherwise."""
    known_prompts: int = 1
    """Plain base: a kept probe question is also *known* when the bare model answers it right under this many
    few-shot prompts, the run's own and `known_prompts - 1` with other shots from the many-shot pool
    (Gekhman et al. 2024's HighlyKnown: greedy right whatever the examples). The drop is then reported on the
    known questions beside all kept ones: a question the model answers right by a coin's margin flips under
    any write. 1: no such split."""

    def __post_init__(self) -> None:
        if self.known_prompts < 1:
            raise ValueError(f"eval.known_prompts must be positive, got {self.known_prompts}")
        for key in ("base_n", "skill_n", "batch_size"):
            if getattr(self, key) < (1 if key == "batch_size" else 0):
                raise ValueError(f"eval.{key} must be {'positive' if key == 'batch_size' else '>= 0'}, "
                                 f"got {getattr(self, key)}")  # fmt: skip
        if self.shots is not None and self.shots < 0:
            raise ValueError(f"eval.shots must be >= 0, got {self.shots}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"eval.max_new_tokens must be positive, got {self.max_new_tokens}")


@dataclass
class ContinualConfig:
    """A continual run: which base model, which sessions, which writer, which media."""

    name: str = "continual"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    seed: int = 0
    """Seed of the writes (batch sampling, soft-prompt init) and of the evaluation subsets."""
    base: str = "runs/base"
    """A pretraining run directory (its model/ and world/, as `retain pretrain` writes it), or any local causal
    LM folder (config.json, weights, tokenizer; `retain model get smollm2-135m --out DIR` makes one)."""
    data: str | None = None
    """Sessions from a file (JSONL with `turns` or `transcript` and `questions`; docs/world.md) instead of the
    world's stream; needed with a plain model folder."""
    sessions: int | None = None
    """The first N sessions of the stream, in order (None: all)."""
    prompt: Literal["auto", "world", "plain", "chat"] = "auto"
    """How questions are put to the model (retain/models/text.py): the world's `Q: ... A:` convention, plain
    text with the tokenizer's own start and end tokens, or its chat template. auto: world for a pretraining
    run, plain for a model folder."""
    base_probe: str | None = None
    """Plain model: JSONL of general questions (`question`, `answer`) for base knowledge; None: the shipped
    160 (retain/data/probe/general_qa.jsonl)."""
    heldout_text: str | None = None
    """Text (paragraphs split by blank lines) whose perplexity drift is measured after every write. None: the
    shipped retain/data/probe/heldout.txt on a plain model, none on a pretraining run's."""
    device: str = "auto"
    """auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N (retain/models/device.py)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast in writes, teacher passes and evaluation where the hardware computes bf16; fp32:
    fp32 everywhere; bf16: bf16 autocast, refused where the device would emulate it."""
    writer: WriterConfig = field(default_factory=WriterConfig)
    media: list[MediumConfig] = field(
        default_factory=lambda: [MediumConfig(kind="none"), MediumConfig(kind="context"), MediumConfig()]
    )
    """The media run side by side on the same materials."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    liti: list[float] = field(default_factory=list)
    """After the last write, each lora and full medium is moved towards the base model by LiTI
    (theta_init + eta (theta - theta_init)) at each of these eta and evaluated: recall against base knowledge."""
    batch_writes: bool = False
    """Write the LoRA SFT media that share rank, alpha, targets, steps and lr (and differ in replay,
    augmentation, source, batch size or dtype) as one stack of adapters, one forward for all of them
    (retain/memory/stacked.py); each ends where it would have written alone."""
    replay_texts: int = 256
    """Plain model with base_replay: texts the bare model writes once (temperature 1) for replay."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        names = [m.name for m in self.media]
        if len(set(names)) != len(names):
            raise ValueError(f"media names must differ, got {names}; set media[i].name")
        if not self.media:
            raise ValueError("media is empty; name at least one medium (e.g. kind: none)")
        if self.sessions is not None and self.sessions < 1:
            raise ValueError(f"sessions must be at least 1, got {self.sessions}")
        if self.replay_texts < 1:
            raise ValueError(f"replay_texts must be positive, got {self.replay_texts}")


@dataclass
class Suites:
    """The fixed questions of a run."""

    sessions: list[list[Question]]
    base: list[Question]
    skills: list[tuple[str, Question]]
    shots: list[Question]
    """Closed-book questions for many-shot ICL (disjoint from `base`)."""
    session_grading: str = "world"
    base_grading: str = "world"
    heldout: list[list[int]] = field(default_factory=list)
    """Token ids of held-out paragraphs: perplexity drift (plain base)."""
    known: list[bool] = field(default_factory=list)
    """Per base question, whether the bare model knows it under every prompt (`eval.known_prompts`); empty:
    no split."""


def fact_bits(world: World, q: Question) -> float:
    """Bits of the fact a recall or update question asks for (log2 of its choice set)."""
    n = len(world.known) if q.attribute == "mentor" else len(ATTRIBUTE_SETS.get(q.attribute, []))
    return math.log2(n) if n > 1 and q.kind in ("recall", "update") else 0.0


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def known_acc(ev: dict, suites: Suites) -> float | None:
    """Accuracy of an evaluation on the base questions the bare model knows (`Suites.known`), or None."""
    return _mean([h for h, k in zip(ev["base_hits"], suites.known) if k]) if suites.known else None


def answers(memory: Memory, questions: list[Question], contexts: list | None = None, batch_size: int = 64) -> list[str]:
    """`memory.answer` (contexts None: the medium's own), each rank of a torchrun answering its share."""

    def some(part: list) -> list[str]:
        mine = None if contexts is None else [c for _, c in part]
        return memory.answer([q for q, _ in part], contexts=mine, batch_size=batch_size)

    return distributed.spread(some, list(zip(questions, contexts or [None] * len(questions))))


def evaluate(memory: Memory, suites: Suites, batch_size: int) -> dict[str, Any]:
    """Exact match (and token F1) on every session's questions, accuracy on base knowledge and on the skill,
    perplexity on held-out text; hits per session question."""
    flat = [q for qs in suites.sessions for q in qs]
    t0 = time.perf_counter()
    preds = answers(memory, flat, batch_size=batch_size)
    graded = [grade(p, q, suites.session_grading) for p, q in zip(preds, flat)]
    per_session, per_session_f1, k = [], [], 0
    for qs in suites.sessions:
        per_session.append(sum(g["em"] for g in graded[k : k + len(qs)]) / len(qs))
        per_session_f1.append(sum(g["f1"] for g in graded[k : k + len(qs)]) / len(qs))
        k += len(qs)
    base = answers(memory, suites.base, [None] * len(suites.base), batch_size)
    base_hits = [grade(p, q, suites.base_grading)["em"] for p, q in zip(base, suites.base)]
    skill = answers(memory, [q for _, q in suites.skills], [c for c, _ in suites.skills], batch_size)
    skill_hits = [grade(p, q, "world")["em"] for p, (_, q) in zip(skill, suites.skills)]
    nll = memory.nll(suites.heldout) if suites.heldout else None
    return {
        "sessions": per_session,
        "sessions_f1": per_session_f1,
        "hits": [g["em"] for g in graded],
        "answers": preds,
        "base_acc": _mean(base_hits) if base_hits else 0.0,
        "base_hits": base_hits,
        "base_answers": base,
        "skill_acc": _mean(skill_hits),
        "ppl": math.exp(nll) if nll is not None else None,
        "answer_seconds": time.perf_counter() - t0,
    }


def run_media(cfg: ContinualConfig, group: list[MediumConfig], stacked: bool, materials, suites: Suites, base: Base,
              rehearsal, run: RunDir, fmt: TextFormat, world: World | None) -> list[dict]:  # fmt: skip
    """Write every session into each medium of `group`, evaluating after each write; returns their records.
    One medium alone, or (`stacked`) LoRA media written as one stack of adapters, one forward for all."""
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    seed_everything(derive_seed(cfg.seed, "medium", group[0].name))
    rehearsal.upto(-1)
    if stacked:
        stack = Stack(model, group[0], [derive_seed(cfg.seed, "medium", m.name) for m in group])
        memories = [StackedLora(stack, g, tok, m, base_text=rehearsal, seed=cfg.seed) for g, m in enumerate(group)]
    else:
        memories = [make_memory(group[0], model, tok, base_text=rehearsal, shot_pool=suites.shots, seed=cfg.seed)]
    before = [evaluate(mem, suites, cfg.eval.batch_size) for mem in memories]
    evals: list[list[dict]] = [[] for _ in memories]
    costs: list[list[WriteCost]] = [[] for _ in memories]
    desc = group[0].name + (f" +{len(group) - 1}" if len(group) > 1 else "")
    for m in progress(materials, quiet=not distributed.is_main(), desc=desc, leave=False):
        rehearsal.upto(m.session)  # replay knows the sessions read so far, not the later ones
        written = write_stacked(memories, m) if stacked else [memories[0].write(m)]
        for mem, cost, ev_list, cost_list in zip(memories, written, evals, costs):
            ev = evaluate(mem, suites, cfg.eval.batch_size)
            ev_list.append(ev)
            cost_list.append(cost)
            if distributed.is_main() and mem.queries:  # what self-study asked: read it to judge the queries
                path = run / "media" / f"{mem.cfg.name}.queries.json"
                asked = read_json(path) if path.exists() else {}
                atomic_write_json(path, asked | {str(m.session): mem.queries})
            if distributed.is_main():
                run.log({"medium": mem.cfg.name, "session": m.session, "write_seconds": cost.seconds,
                         "write_tokens": cost.tokens, "recall_just_written": ev["sessions"][m.session],
                         "base_acc": ev["base_acc"], "skill_acc": ev["skill_acc"], "ppl": ev["ppl"],
                         "nbytes": mem.nbytes()})  # fmt: skip
    return [record(cfg, mem, materials, suites, world, b, e, c) for mem, b, e, c in zip(memories, before, evals, costs)]


def record(cfg: ContinualConfig, memory: Memory, materials, suites: Suites, world: World | None, before: dict,
           evals: list[dict], costs: list[WriteCost]) -> dict:  # fmt: skip
    """A medium's record: its matrix R, curves, final metrics and costs (and its LiTI front)."""
    mcfg = memory.cfg
    rows, rows_f1 = [e["sessions"] for e in evals], [e["sessions_f1"] for e in evals]
    front = liti_front(memory, cfg.liti, suites, cfg.eval.batch_size) if mcfg.kind in ("lora", "full") else []
    session_tokens = sum(m.session_tokens for m in materials)
    final = evals[-1]
    flat = [q for qs in suites.sessions for q in qs]
    nbytes, params = memory.nbytes(), memory.params()
    bits = sum(fact_bits(world, q) for q, h in zip(flat, final["hits"]) if h) if world is not None else None
    ppl0, ppl = before["ppl"], final["ppl"]
    return {
        "name": mcfg.name, "kind": mcfg.kind, "config": {k: getattr(mcfg, k) for k in mcfg.__dataclass_fields__},
        "R0": before["sessions"], "R": rows, "R0_f1": before["sessions_f1"], "R_f1": rows_f1,
        "base_curve": [before["base_acc"]] + [e["base_acc"] for e in evals],
        "skill_curve": [before["skill_acc"]] + [e["skill_acc"] for e in evals],
        "ppl_curve": [before["ppl"]] + [e["ppl"] for e in evals],
        "acc": CL.acc(rows), "acc_f1": CL.acc(rows_f1), "bwt": CL.bwt(rows), "fwt": CL.fwt(rows, before["sessions"]),
        "forgetting": CL.forgetting(rows), "just_written": CL.just_written(rows),
        "base_acc": final["base_acc"], "base_acc_drop": before["base_acc"] - final["base_acc"],
        "base_known_acc": known_acc(final, suites),
        "base_known_drop": (known_acc(before, suites) - known_acc(final, suites) if suites.known else None),
        "hits": final["hits"],  # per session question (in session order), right after the last write
        "answers": final["answers"],
        "base_lost": [{"question": q.text, "answer": q.answer, "now": a}
                      for q, h0, h, a in zip(suites.base, before["base_hits"], final["base_hits"],
                                             final["base_answers"])
                      if h0 and not h],
        "skill_acc": final["skill_acc"],
        "skill_acc_drop": before["skill_acc"] - final["skill_acc"] if final["skill_acc"] is not None else None,
        "ppl": ppl, "ppl_drift": ppl / ppl0 - 1 if ppl is not None else None,
        "nbytes": nbytes, "bytes_per_token": nbytes / session_tokens, "params": params,
        "bits": bits, "bits_per_param": bits / params if params and bits is not None else None,
        "write_seconds": sum(c.seconds for c in costs), "write_tokens": sum(c.tokens for c in costs),
        "answer_seconds": sum(e["answer_seconds"] for e in evals),
        "liti": front, "svd_errors": getattr(memory, "svd_errors", []),
    }  # fmt: skip


def write_groups(media: list[MediumConfig], batch: bool) -> list[tuple[list[MediumConfig], bool]]:
    """The media in the order they run, each alone or (`batch`) the LoRA media that share a stack key together,
    written as one stack (`retain.memory.stacked`); a stackable medium alone is a stack of one, so its numbers
    do not depend on what it was stacked with."""
    if not batch:
        return [([m], False) for m in media]
    groups: dict[tuple, list[MediumConfig]] = {}
    for m in media:
        key = stack_key(m)
        groups.setdefault(key if key is not None else ("alone", m.name), []).append(m)
    return [(g, stack_key(g[0]) is not None) for g in groups.values()]


def liti_front(memory, etas: list[float], suites: Suites, batch_size: int) -> list[dict[str, float]]:
    """Recall over every session and base-knowledge accuracy of the final memory moved towards the base
    model by LiTI at each eta: the trade-off front between what was written and what was known."""
    front = []
    for eta in progress(etas, quiet=not distributed.is_main(), desc="LiTI", leave=False):
        with memory.liti(eta):
            ev = evaluate(memory, suites, batch_size)
        front.append({"eta": eta, "acc": CL.acc([ev["sessions"]]),
                      "base_acc": ev["base_acc"], "skill_acc": ev["skill_acc"]})  # fmt: skip
    return front


def needs_world(m: MediumConfig) -> str | None:
    """Why medium `m` cannot run on sessions without the world's facts (None: it can)."""
    if m.source == "oracle":
        return "its source is the oracle notes, the world's facts of each session"
    return None


def prepare(cfg: ContinualConfig) -> tuple[Base, Stream, TextFormat, list[MediumConfig]]:
    """Everything a run checks before its directory exists: base, sessions, questions, media, lengths. Returns
    the base, the stream, the text format and the media that run (those that need the world are left out on
    sessions without it, with a note)."""
    base = resolve_base(cfg.base)
    style = base.style if cfg.prompt == "auto" else cfg.prompt
    shots = cfg.eval.shots if cfg.eval.shots is not None else (0 if style == "world" else 4)
    stream = build_stream(base, cfg.sessions, cfg.data, cfg.eval.base_n, cfg.eval.skill_n, shots, cfg.seed,
                          cfg.base_probe, cfg.heldout_text)  # fmt: skip
    if cfg.eval.known_prompts > 1 and (base.world is not None or not shots or len(stream.shots) < shots):
        raise RetainError(f"eval.known_prompts {cfg.eval.known_prompts} asks the probe again with other shots: it "
                          f"needs a plain base with eval.shots > 0 and a many-shot pool of at least that many "
                          f"questions (here {len(stream.shots)}); set eval.known_prompts: 1")  # fmt: skip
    if cfg.writer.kind == "oracle" and stream.world is None:
        raise RetainError("writer oracle writes the world's facts of each session; sessions from a file have none: "
                          "use writer.kind transcript or model")  # fmt: skip
    media = []
    for m in cfg.media:
        why = needs_world(m) if stream.world is None else None
        if why:
            stream.notes.append(f"medium {m.name} left out: {why}")
        else:
            media.append(m)
    if not media:
        raise RetainError("every medium needs the world's facts; add a medium whose source is writer or transcript")
    config = model_config(base.model_dir)
    for m in media:
        m.check_model(config)
        if m.queries in ANSWER_SPANS and m.objective == "distill" and style == "world":
            raise RetainError(f"media '{m.name}': queries {m.queries} is self-study for a pretrained model reading "
                              "plain text; the world's model asks with queries: self_study")  # fmt: skip
    tok = load_tokenizer(base.model_dir)
    fmt = TextFormat.of(tok, style, [(q.text, q.answer) for q in stream.format_shots], cfg.eval.max_new_tokens)
    ids = [tok(s.transcript, add_special_tokens=False)["input_ids"] for s in stream.sessions]
    check_lengths(stream, ids, getattr(config, "max_position_embeddings", None), cfg.data or "the world")
    unknown_note(stream, tok, ids)
    return base, stream, fmt, media


def known_base(memory: Memory, stream: Stream, batch_size: int) -> list[Question]:
    """The base questions the bare model answers right: on a plain model the probe keeps only those, so that
    its drop measures what the writes took away, not what the model never knew."""
    said = answers(memory, stream.base, [None] * len(stream.base), batch_size)
    return [q for q, a in zip(stream.base, said) if grade(a, q, stream.base_grading)["em"]]


def known_everywhere(model, tok, questions: list[Question], pool: list[Question], grading: str,
                     cfg: ContinualConfig) -> list[Question]:  # fmt: skip
    """Of `questions` (answered right with the run's shots), those the bare model also answers right with
    each of `eval.known_prompts - 1` other sets of as many shots, drawn from `pool` (never an evaluated
    question)."""
    fmt = text_format(tok)
    n = len(fmt.shots)
    memory, right = make_memory(MediumConfig(kind="none"), model, tok), [True] * len(questions)
    try:
        for i in range(1, cfg.eval.known_prompts):
            shots = random.Random(derive_seed(cfg.seed, "known", i)).sample(pool, n)
            use_format(tok, replace(fmt, shots=[(q.text, q.answer) for q in shots]))
            said = answers(memory, questions, [None] * len(questions), cfg.eval.batch_size)
            right = [r and bool(grade(a, q, grading)["em"]) for r, a, q in zip(right, said, questions)]
    finally:
        use_format(tok, fmt)
    return [q for q, r in zip(questions, right) if r]


def continual(cfg: ContinualConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every medium of `cfg` over the session stream; writes summary.json, report.md and plots. With
    `resume` the run's own config.yaml is used; a config given with it may change only where and on how many
    threads it runs (`retain.config.OPERATIONAL`)."""
    if resume:
        cfg = resume_config(cfg, out)
    configure(cfg.device, cfg.precision)  # a device this machine lacks fails before the run dir
    for i, m in enumerate(cfg.media):
        if m.kind in APPLIES["batch_size"]:
            distributed.check_divides(m.batch_size, f"media[{i}].batch_size")
    distributed.init(device())
    main = distributed.is_main()
    say = print if main else lambda *a: None  # rank 0 alone prints and writes
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per medium is noise
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b")
    if cfg.writer.kind == "model" and cfg.writer.decoding.adaptive != "none":
        from retain.sampling import TemperatureHead

        TemperatureHead.load(cfg.writer.decoding.head)  # a missing head fails here, before the run dir exists
    base, stream, fmt, media = prepare(cfg)  # bad sessions, media and models fail before the run directory exists
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, fmt)
    run = open_run(cfg, out, resume)
    for note in stream.notes:
        say(f"note: {note}")
    writer = make_writer(cfg.writer, model, tok)
    materials = distributed.broadcast([writer(s) for s in stream.sessions] if main else None)  # sampled once
    hidden = {"facts": None, "updates": None, "questions": None, "world_session": None}  # the world's
    if main:
        atomic_write_json(run / "materials.json", [m.__dict__ | hidden for m in materials])
    suites, rehearsal = fixed_questions(cfg, base, stream, model, tok, run)
    del model
    results, pending = {}, []
    for mcfg in media:
        path = run / "media" / f"{mcfg.name}.json"
        done = distributed.broadcast(read_json(path) if main and path.exists() else None)
        if done is not None:
            results[mcfg.name] = done
        else:
            pending.append(mcfg)
    for group, stacked in write_groups(pending, cfg.batch_writes):
        names = {m.name for m in group}
        say(f"medium {', '.join(sorted(names))}: writing {len(materials)} sessions{' (one stack)' * stacked}")
        if main:
            run.keep_metrics(lambda r, names=names: r.get("medium") not in names)  # records of an interrupted try
        for mcfg, rec in zip(group, run_media(cfg, group, stacked, materials, suites, base, rehearsal, run, fmt,
                                              stream.world)):  # fmt: skip
            results[mcfg.name] = rec
            if main:
                atomic_write_json(run / "media" / f"{mcfg.name}.json", rec)
    results = {m.name: results[m.name] for m in media}  # in the config's order
    summary = summarize(results, base.model_dir)
    summary["notes"] = stream.notes
    summary["grading"] = stream.session_grading
    summary["base_questions"] = len(suites.base)
    if main:
        run.write_summary(summary)
        from retain.continual.report import write_report

        write_report(run, cfg, results, summary)
    rank = distributed.rank()
    distributed.close()
    return {**summary, "report": str(run / "report.md"), "rank": rank}


def open_run(cfg: ContinualConfig, out: str | None, resume: bool) -> RunDir:
    """The run directory, opened (and its config written) by rank 0 and its path sent to the other ranks; an
    error there (a run already at `out`, say) reaches every rank."""
    opened: RunDir | RetainError | None = None
    if distributed.is_main():
        try:
            opened = RunDir.open(cfg.name, out, resume)
            if not resume:
                opened.write_config(cfg)
        except RetainError as e:
            opened = e
    sent = distributed.broadcast(str(opened.path) if isinstance(opened, RunDir) else opened)
    if isinstance(sent, RetainError):
        raise sent
    return opened if isinstance(opened, RunDir) else RunDir(sent)


def fixed_questions(cfg: ContinualConfig, base: Base, stream: Stream, model, tok, run: RunDir):
    """The run's suites and its rehearsal. On a plain model: the probe questions the bare model answers right
    (kept once, in base_probe.json, so a resumed run asks the same) and, when a medium replays base text, the
    model's own texts (replay.json)."""
    suites = Suites([s.questions for s in stream.sessions], stream.base, stream.skills, stream.shots,
                    stream.session_grading, stream.base_grading,
                    [tok(p, add_special_tokens=False)["input_ids"][:256] for p in stream.heldout])  # fmt: skip
    if base.world is not None:
        world = stream.world or World(base.world.config, base.world.entities, [])  # a file's sessions update nothing
        return suites, Rehearsal(world)
    main, kept_path = distributed.is_main(), run / "base_probe.json"
    kept = distributed.broadcast(read_json(kept_path) if main and kept_path.exists() else None)
    if kept is not None:
        kept = set(kept)
        suites.base = [q for q in stream.base if q.text in kept]
    else:
        suites.base = known_base(make_memory(MediumConfig(kind="none"), model, tok), stream, cfg.eval.batch_size)
        if main:
            atomic_write_json(kept_path, [q.text for q in suites.base])
    if main:
        print(
            f"base probe: the model answers {len(suites.base)} of {len(stream.base)} general questions; those are kept"
        )
    if cfg.eval.known_prompts > 1:
        known_path = run / "base_known.json"
        known = distributed.broadcast(read_json(known_path) if main and known_path.exists() else None)
        if known is None:
            known = [q.text for q in known_everywhere(model, tok, suites.base, stream.shots, suites.base_grading, cfg)]
            if main:
                atomic_write_json(known_path, known)
        known = set(known)
        suites.known = [q.text in known for q in suites.base]
        if main:
            print(f"base probe: {sum(suites.known)} of them answered right under {cfg.eval.known_prompts} "
                  "few-shot prompts (known)")  # fmt: skip
    texts: list[str] = []
    if any(m.base_replay > 0 for m in cfg.media):
        path = run / "replay.json"
        if main:
            if path.exists():
                texts = read_json(path)
            else:
                texts = own_texts(model, tok, cfg.replay_texts, 64, derive_seed(cfg.seed, "replay"))
                atomic_write_json(path, texts)
        texts = distributed.broadcast(texts)
    pairs = [text_format(tok).qa_text(q.text, q.answer) for q in stream.shots]
    return suites, TextRehearsal(texts, pairs)


def summarize(results: dict[str, dict], model_dir: Path) -> dict[str, Any]:
    """Per medium, the headline numbers, and how they compare with keeping every session in context: its
    KV cache costs `kv_bytes_per_token` whatever the budget, and its recall is the best context medium's (with
    retrieval, if one retrieves: the strictest in-context reference)."""
    keys = ["acc", "acc_f1", "bwt", "fwt", "forgetting", "just_written", "base_acc", "base_acc_drop", "base_known_acc",
            "base_known_drop", "skill_acc",
            "ppl_drift", "bytes_per_token", "bits_per_param", "params", "nbytes", "write_seconds",
            "answer_seconds"]  # fmt: skip
    kv = kv_bytes_per_token(from_hf_config(model_config(model_dir).to_dict()))
    out: dict[str, Any] = {
        "kv_bytes_per_token": kv,
        "media": {n: {"kind": r["kind"], **{k: r.get(k) for k in keys}} for n, r in results.items()},
    }
    ctx = max((r for r in results.values() if r["kind"] == "context"), key=lambda r: r["acc"], default=None)
    for r in out["media"].values():
        r["bytes_ratio_vs_kv"] = kv / r["bytes_per_token"] if r["bytes_per_token"] else None
        r["recall_vs_context"] = r["acc"] / ctx["acc"] if ctx and ctx["acc"] else None
        r["f1_vs_context"] = r["acc_f1"] / ctx["acc_f1"] if ctx and ctx.get("acc_f1") else None
        r["recall_vs"] = {c["name"]: r["acc"] / c["acc"] if c["acc"] else None
                          for c in results.values() if c["kind"] == "context"}  # fmt: skip
    out["reference"] = ctx["name"] if ctx else None
    return out


def main(cfg: ContinualConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain run`."""
    s = continual(cfg, out, resume)
    if s["rank"]:
        return
    width = max(len(n) for n in s["media"])
    text = s["grading"] == "text"
    points = lambda drop: 0.0 - drop * 100 + 0.0  # noqa: E731  (+ 0.0 turns -0.0 into 0.0)
    for name, m in s["media"].items():
        f1 = f"  F1 {m['acc_f1']:.3f}" if text else ""
        ppl = f"  ppl {m['ppl_drift'] * 100:+5.1f}%" if m.get("ppl_drift") is not None else ""
        known = f" (known {points(m['base_known_drop']):+5.1f})" if m.get("base_known_drop") is not None else ""
        print(
            f"  {name:{width}s} {'EM' if text else 'ACC'} {m['acc']:.3f}{f1}  BWT {m['bwt']:+.3f}  "
            f"base {points(m['base_acc_drop']):+5.1f} pt{known}{ppl}  {m['bytes_per_token']:7.1f} B/token  "
            f"write {m['write_seconds']:3.0f} s"
        )
    print(f"report: {s['report']}")
