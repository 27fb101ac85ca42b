"""`retain score`: SCoRe against naive multi-turn RL and no training, on the world's questions about its people.

    retain score configs/score/world.yaml --out runs/score
    retain score configs/score/world.yaml --set memory=bio --out runs/score-bio   # attempt 2 reads the biography
    retain score --out runs/score --resume

Each (arm, seed) is a job: the policy starts from the base, trains on questions about the training people and
is evaluated greedily on the held-out people every `eval_every` iterations. Batches are a pure function of
(seed, arm, iteration), so a job resumes from its last checkpoint and takes the steps an uninterrupted one takes.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from retain.config import resume_config
from retain.errors import RetainError
from retain.eval.exact_match import exact_match
from retain.eval.qa import decode_answer, encode
from retain.models.text import text_format
from retain.rl.algorithms import completion_logprobs
from retain.rl.episode import with_eos
from retain.rl.score import Attempts, score_loss, self_correction
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    save_checkpoint,
    unpack_optimizer,
)
from retain.runs.files import atomic_write_json, read_json
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed
from retain.sampling import DecodingConfig, sample
from retain.world import examples as X
from retain.world import render as R
from retain.world.world import reserved_names

ARMS = ("none", "naive", "score")


@dataclass
class ScoreConfig:
    """Two-attempt self-correction RL on the world's questions, against its baselines, over seeds."""

    name: str = "score"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    base: str = "runs/base"
    """A pretraining run (model/ and world/): its people are the questions."""
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    """none (the base, untrained), naive (both attempts rewarded, no Stage I, no shaping), score."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """One job per arm and seed (none: evaluated once)."""
    instruction: str = "is that the value ? again ."
    """What comes between attempt 1's answer and the question asked again (words the tokenizer knows)."""
    memory: Literal["none", "bio"] = "none"
    """What attempt 2 reads that attempt 1 did not: nothing, or the person's biography (focused context)."""
    people: Literal["known", "fresh", "mixed"] = "known"
    """Whose questions: the world's known people (in the weights), fresh people (only in the biography, so
    attempt 1 can only guess), or both."""
    templates: Literal["heldout", "train"] = "heldout"
    """Question phrasings: the held-out templates (the base answers about 0.6 of them) or the trained ones."""
    heldout_people: float = 0.25
    """Fraction of the world's known people whose questions are only evaluated."""
    stage1: int = 40
    """SCoRe's Stage I iterations per round."""
    stage2: int = 80
    """SCoRe's Stage II iterations per round (naive trains stage1 + stage2 per round, all like Stage II)."""
    rounds: int = 1
    """Stage I then Stage II, this many times (interleaved stages)."""
    questions: int = 32
    """Training questions per iteration."""
    group: int = 4
    """Samples per question (the advantage's baseline)."""
    lr: float = 3e-5
    """Adam learning rate of the policy."""
    alpha: float = 10.0
    """Stage II's bonus on attempt 2: alpha (r2 - r1) (the paper: 10)."""
    beta1: float = 0.01
    """KL to the reference on both attempts (the paper: 0.01)."""
    beta2: float | None = None
    """Stage I's KL on attempt 1; None: 10 x beta1 (the paper)."""
    temperature: float = 1.0
    """Sampling temperature of training episodes (evaluation is greedy)."""
    max_new_tokens: int = 8
    """Most tokens of an answer."""
    eval_every: int = 20
    """Iterations between evaluations on the held-out people."""
    eval_n: int = 400
    """Held-out questions evaluated (a fixed subset when there are more)."""
    seed: int = 0
    """Seed of the people split and the evaluated questions."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    """Compute precision (fp32: the tiny model gains nothing from bf16)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        if not self.instruction.strip():
            raise ValueError("instruction is empty: two attempts need the text that asks for the second one")
        if self.alpha < 0 or self.beta1 < 0 or (self.beta2 is not None and self.beta2 < 0):
            raise ValueError(f"alpha, beta1 and beta2 must be >= 0, got {self.alpha}, {self.beta1}, {self.beta2}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ValueError(f"arms {bad or '[]'} unknown: choose from {', '.join(ARMS)}")
        if not 0 < self.heldout_people < 1:
            raise ValueError(f"heldout_people must be in (0, 1), got {self.heldout_people}")
        for key in ("stage2", "rounds", "questions", "group", "eval_every", "eval_n", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.stage1 < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("stage1 must be >= 0, lr and temperature > 0")

    @property
    def kl_first(self) -> float:
        return 10 * self.beta1 if self.beta2 is None else self.beta2

    def schedule(self, arm: str) -> list[str]:
        """The stage of each training iteration of `arm`."""
        if arm == "none":
            return []
        if arm == "naive":
            return ["II"] * ((self.stage1 + self.stage2) * self.rounds)
        return (["I"] * self.stage1 + ["II"] * self.stage2) * self.rounds


class Task:
    """The people, the prompts of both attempts, and greedy or sampled episodes."""

    def __init__(self, cfg: ScoreConfig, world, tok):
        self.cfg, self.world, self.tok = cfg, world, tok
        known = sorted(world.known, key=lambda e: e.name)
        random.Random(derive_seed(cfg.seed, "people")).shuffle(known)
        k = max(1, round(len(known) * cfg.heldout_people))
        self.heldout, self.train = [], []
        if cfg.people in ("known", "mixed"):
            self.heldout, self.train = known[:k], known[k:]
        if cfg.people in ("fresh", "mixed"):  # never in the weights: attempt 1 can only guess
            fresh = X.fresh_people(
                world, len(known), random.Random(derive_seed(cfg.seed, "fresh")), reserved_names(world)
            )
            self.heldout, self.train = self.heldout + fresh[:k], self.train + fresh[k:]
        people = self.heldout + self.train
        if not self.train:
            raise RetainError(f"heldout_people {cfg.heldout_people} leaves no training people of {len(people)}")
        ids = tok(cfg.instruction, add_special_tokens=False)["input_ids"]
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            unknown = [
                w for w in cfg.instruction.split() if tok.unk_token_id in tok(w, add_special_tokens=False)["input_ids"]
            ]
            raise RetainError(f"instruction words {unknown} are unknown to the base's tokenizer; use words of its "
                              "vocabulary (the default: 'is that the value ? again .')")  # fmt: skip
        rng = random.Random(derive_seed(cfg.seed, "eval"))
        qs = [
            R.question(e.name, a, v, rng, cfg.templates == "heldout", forms=world.config.question_forms)
            for e in self.heldout
            for a, v in e.attrs.items()
        ]
        rng.shuffle(qs)
        self.eval_questions = qs[: cfg.eval_n]
        self.bios = {e.name: R.bio(e, random.Random(derive_seed(cfg.seed, "bio", e.name))) for e in people}

    def batch(self, rng: random.Random) -> list:
        """`questions` training questions: a random person and attribute each, in a random phrasing."""
        out = []
        for _ in range(self.cfg.questions):
            e = rng.choice(self.train)
            a = rng.choice(list(e.attrs))
            out.append(
                R.question(
                    e.name, a, e.attrs[a], rng, self.cfg.templates == "heldout", forms=self.world.config.question_forms
                )
            )
        return out

    def first(self, q) -> list[int]:
        """Attempt 1's prompt: the question closed-book, in the base's question format."""
        return encode(self.tok, text_format(self.tok).prompt(q.text)[1])

    def second(self, q, first: list[int], answer: list[int]) -> list[int]:
        """Attempt 1's prompt and answer, (the memory,) the instruction, the question again."""
        memory = f" {self.bios[q.entity]}" if self.cfg.memory == "bio" else ""
        again = f"{memory} {self.cfg.instruction} {text_format(self.tok).prompt(q.text)[1]}"
        return first + answer + self.tok(again, add_special_tokens=False)["input_ids"]

    def episodes(self, policy, qs: list, n: int, greedy: bool, seed: int):
        """`n` two-attempt episodes per question: prompts and answers of both attempts (ids, no eos)."""
        dec = DecodingConfig() if greedy else DecodingConfig(temperature=self.cfg.temperature)
        gen = torch.Generator().manual_seed(seed)
        x1 = [self.first(q) for q in qs for _ in range(n)]
        y1 = sample(policy, self.tok, x1, dec, max_new_tokens=self.cfg.max_new_tokens, generator=gen)
        x2 = [self.second(qs[i // n], x, y) for i, (x, y) in enumerate(zip(x1, y1))]
        y2 = sample(policy, self.tok, x2, dec, max_new_tokens=self.cfg.max_new_tokens, generator=gen)
        return x1, y1, x2, y2

    def right(self, qs: list, n: int, ys: list[list[int]]) -> list[bool]:
        return [exact_match(decode_answer(self.tok, y), qs[i // n].answer) for i, y in enumerate(ys)]


@torch.no_grad()
def evaluate(task: Task, policy) -> dict[str, float]:
    """Greedy attempts on the held-out people's questions: the self-correction metrics."""
    qs = task.eval_questions
    _, y1, _, y2 = task.episodes(policy, qs, 1, greedy=True, seed=0)
    return self_correction(task.right(qs, 1, y1), task.right(qs, 1, y2), [a == b for a, b in zip(y1, y2)])


def step(task: Task, policy, ref, opt, stage: str, alpha: float, rng: random.Random, seed: int) -> dict[str, float]:
    """One on-policy iteration: sample episodes, reward both attempts, one gradient step (`alpha`: Stage II's
    shaping; 0 for naive multi-turn RL)."""
    cfg, tok, g = task.cfg, task.tok, task.cfg.group
    qs = task.batch(rng)
    policy.eval()
    with torch.no_grad():
        x1, y1, x2, y2 = task.episodes(policy, qs, g, greedy=False, seed=seed)
    r1 = torch.tensor(task.right(qs, g, y1), dtype=torch.float32)
    r2 = torch.tensor(task.right(qs, g, y2), dtype=torch.float32)
    c1 = [with_eos(tok, y, cfg.max_new_tokens) for y in y1]
    c2 = [with_eos(tok, y, cfg.max_new_tokens) for y in y2]
    with torch.no_grad():
        ref1, _ = completion_logprobs(ref, x1, c1, tok.pad_token_id)
        ref2, _ = completion_logprobs(ref, x2, c2, tok.pad_token_id)
    policy.train()
    logp1, m1 = completion_logprobs(policy, x1, c1, tok.pad_token_id)
    logp2, m2 = completion_logprobs(policy, x2, c2, tok.pad_token_id)
    batch = Attempts(logp1, ref1, m1, logp2, ref2, m2, r1, r2, g)
    loss, stats = score_loss(batch, stage, alpha, cfg.beta1, cfg.kl_first)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"r1": float(r1.mean()), "r2": float(r2.mean()), **stats}


def job(task: Task, base, run: RunDir, arm: str, seed: int) -> dict[str, Any]:
    """Train one arm from the base with one seed, evaluating along the way; resumes from its checkpoint."""
    cfg = task.cfg
    name = f"{arm}-s{seed}"
    sched = cfg.schedule(arm)
    policy = copy.deepcopy(base).requires_grad_(True)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    start, ckdir = 0, run.ckpt_dir / name
    if ckpt := latest_checkpoint(ckdir):
        state, meta = load_checkpoint(ckpt)
        policy.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("policy.")})
        unpack_optimizer(opt, state, meta["optim"])
        start = meta["step"]
    run.keep_metrics(lambda r: r.get("job") != name or (start > 0 and r["iteration"] <= start))  # redo the rest
    if start == 0:
        run.log({"job": name, "arm": arm, "seed": seed, "iteration": 0, **evaluate(task, policy)})
    bar = progress(total=len(sched), initial=start, desc=name, leave=False)
    t0 = time.perf_counter()
    for it in range(start, len(sched)):
        rng = random.Random(derive_seed(seed, arm, it))
        alpha = cfg.alpha if arm == "score" else 0.0  # naive multi-turn RL: Stage II unshaped
        stats = step(task, policy, base, opt, sched[it], alpha, rng, derive_seed(seed, arm, it, "sample"))
        bar.update(1)
        bar.set_postfix({"r1": f"{stats['r1']:.2f}", "r2": f"{stats['r2']:.2f}"})
        if (it + 1) % cfg.eval_every == 0 or it + 1 == len(sched):
            run.log({"job": name, "arm": arm, "seed": seed, "iteration": it + 1, "stage": sched[it], **stats,
                     **evaluate(task, policy), "seconds": time.perf_counter() - t0})  # fmt: skip
            o_t, o_m = pack_optimizer(opt)
            save_checkpoint(ckdir, it + 1, {**{f"policy.{k}": v for k, v in policy.state_dict().items()}, **o_t},
                            {"optim": o_m})  # fmt: skip
    bar.close()
    last = [r for r in run.metrics() if r.get("job") == name][-1]
    return {"arm": arm, "seed": seed, "iterations": len(sched), **{k: last[k] for k in
            ("acc_t1", "acc_t2", "delta", "i_to_c", "c_to_i", "same")}}  # fmt: skip


def score(cfg: ScoreConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every job not yet finished; write summary.json, report.md and the plots."""
    from retain.continual.stream import resolve_base
    from retain.models.build import load_model_and_tokenizer
    from retain.models.device import configure
    from retain.models.text import TextFormat, use_format

    if resume:
        cfg = resume_config(cfg, out)
    configure(cfg.device, cfg.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base = resolve_base(cfg.base)
    if base.world is None:
        raise RetainError(f"base '{cfg.base}' is a model folder; retain score asks about the world's people: give "
                          "a pretraining run (retain pretrain --out runs/base)")  # fmt: skip
    model, tok = load_model_and_tokenizer(base.model_dir)
    use_format(tok, TextFormat.of(tok, "world"))
    task = Task(cfg, base.world, tok)  # an instruction the tokenizer cannot read fails before the run directory
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    model.requires_grad_(False).eval()
    (run / "jobs").mkdir(exist_ok=True)
    results = []
    for arm in cfg.arms:
        for seed in cfg.seeds if arm != "none" else cfg.seeds[:1]:
            path = run / "jobs" / f"{arm}-s{seed}.json"
            if not path.exists():
                atomic_write_json(path, job(task, model, run, arm, seed))
            results.append(read_json(path))
    summary = summarize(cfg, results)
    run.write_summary(summary)
    from retain.rl.score_report import write_report

    write_report(run, cfg, summary)
    return summary


def summarize(cfg: ScoreConfig, results: list[dict]) -> dict[str, Any]:
    """Per arm, the final held-out metrics averaged over seeds (and each seed's), and the targets' verdicts."""
    arms: dict[str, Any] = {}
    for r in results:
        arms.setdefault(r["arm"], []).append(r)
    out: dict[str, Any] = {"memory": cfg.memory, "arms": {}}
    for arm, rs in arms.items():
        keys = ("acc_t1", "acc_t2", "delta", "i_to_c", "c_to_i", "same")
        out["arms"][arm] = {**{k: sum(r[k] for r in rs) / len(rs) for k in keys}, "seeds": rs}
    s, n = out["arms"].get("score"), out["arms"].get("naive")
    if s:
        each = [r["delta"] > 0 and r["c_to_i"] <= r["i_to_c"] / 2 for r in s["seeds"]]
        out["score_met"] = all(each) and len(each) >= 2
    if n:
        out["naive_fails"] = all(r["delta"] <= 0 or r["same"] >= 0.9 for r in n["seeds"])
    return out


def main(cfg: ScoreConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain score`."""
    s = score(cfg, out, resume)
    for arm, m in s["arms"].items():
        print(
            f"{arm:>6}: Acc@t1 {m['acc_t1']:.3f}  Acc@t2 {m['acc_t2']:.3f}  delta {m['delta']:+.3f}  "
            f"i->c {m['i_to_c']:.3f}  c->i {m['c_to_i']:.3f}  attempt 2 = attempt 1: {m['same']:.2f}"
        )
