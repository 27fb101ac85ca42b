"""`retain rl`: the outer loop. The policy (a copy of the base model) writes self-edits of fresh sessions;
each is written into a fresh LoRA on the frozen base model; recall on the session's questions is the reward.

    retain rl configs/rl.yaml --out runs/rl
    retain rl --out runs/rl --resume         # continues after the last finished iteration
    retain rl configs/smoke/rl.yaml --set base=models/smollm2-135m --set data=my_sessions.jsonl

Sessions are fresh people drawn from the world, or (`data`) the sessions of a file: the last `heldout` are
held out, RL draws from the others.

Per iteration: sample `group` self-edits for each of `sessions` fresh sessions -> batched inner loop ->
rewards -> ReST-EM (SFT on the self-edits that beat their group) or policy gradient (GRPO advantages, KL to
the base) -> every `eval_every` iterations, held-out recall of the policy's greedy self-edits.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from retain.config import resume_config
from retain.errors import RetainError
from retain.memory.base import MediumConfig
from retain.models.build import load_model_and_tokenizer
from retain.rl import algorithms as A
from retain.rl import episode as E
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
from retain.sampling import DecodingConfig
from retain.world import render as R
from retain.world.world import Session, World


@dataclass
class RLConfig:
    """An RL run: which base model, which algorithm, how big an iteration, how the inner loop writes."""

    name: str = "rl"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    seed: int = 0
    """Seed of the sessions, the sampling and the adapters' initialisation."""
    base: str = "runs/base"
    """A pretraining run directory (its model/ and world/), or any local causal LM folder (with `data`)."""
    data: str | None = None
    """Sessions from a file (JSONL with questions; docs/world.md) instead of fresh ones from the world: the last
    `heldout` are held out, each iteration draws `sessions` of the others."""
    prompt: Literal["auto", "world", "plain", "chat"] = "auto"
    """How questions are put to the model (retain/models/text.py); auto: world for a pretraining run, plain for
    a model folder."""
    shots: int | None = None
    """Question-answer pairs of general knowledge before every question (plain text: the answer format); None:
    0 in world style, 4 otherwise."""
    device: str = "auto"
    """auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N (retain/models/device.py)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast where the hardware computes bf16; fp32 everywhere; bf16: refused where emulated."""
    algorithm: Literal["rest_em", "pg"] = "rest_em"
    """rest_em (keep self-edits that beat their group's mean reward, SFT the policy on them) or pg
    (REINFORCE with GRPO-normalised group advantages and a KL penalty to the base model)."""
    iterations: int = 12
    """Outer-loop iterations."""
    sessions: int = 8
    """Fresh training sessions per iteration."""
    group: int = 8
    """Self-edits sampled per session (G); the G inner-loop writes of a session run as one batched loop."""
    decoding: DecodingConfig = field(default_factory=lambda: DecodingConfig(temperature=1.0))
    """How the policy samples its self-edits during RL (held-out self-edits are greedy)."""
    max_new_tokens: int = 96
    """Most tokens of a self-edit."""
    inner: MediumConfig = field(default_factory=E.inner_default)
    """The inner loop: a fresh LoRA per self-edit (kind lora; rank, targets, steps, lr, batch_size, augment)."""
    horizon: int = 0
    """Long horizon: after the self-edit, the adapter also writes this many later sessions (their oracle
    notes) before it is asked, so only knowledge that survives them is rewarded."""
    ask: list[str] = field(default_factory=list)
    """Which of a session's questions are asked (training and held-out): recall attributes (birth_city,
    employer, ...), update, two_hop; empty: all. Later sessions asking about only some facts is what makes
    choosing what to write pay under a budget."""
    reward: Literal["exact_match", "answer_logprob"] = "exact_match"
    """What the written adapter is rewarded for: exact match on the asked questions, or its log-probability of
    their right answers per answer token (graded: it separates self-edits that exact match scores the same,
    a fact half-learned from one absent). Held-out evaluation is exact match either way."""
    token_cost: float = 0.0
    """Reward minus this much per written token of the self-edit."""
    lr: float = 1e-4
    """Learning rate of the policy (AdamW, all weights)."""
    policy_steps: int = 8
    """rest_em: SFT steps on the kept self-edits per iteration; pg: gradient steps per iteration."""
    policy_batch: int = 16
    """Self-edits per policy step."""
    margin: float = 0.0
    """rest_em: a self-edit is kept when its reward exceeds its group's mean by more than this."""
    keep: Literal["above_mean", "best"] = "above_mean"
    """rest_em: keep every self-edit above its group's mean, or only the best of each group (ties broken by
    the reference policy's mean log-likelihood per token: of equally rewarded edits, the least garbled)."""
    kl: float = 0.05
    """pg: weight of the KL penalty to the reference (base) policy."""
    heldout: int = 24
    """Held-out sessions (people never seen in RL) for evaluation; with `data`, the file's last ones."""
    eval_seeds: int = 2
    """Adapter initialisations each held-out write is averaged over (the same at every evaluation)."""
    eval_every: int = 2
    """Evaluate on the held-out sessions every this many iterations (and after the last)."""
    efficiency_groups: int = 1
    """Groups timed both batched and one adapter at a time at the start of the run (episodes per minute)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        for key in ("iterations", "sessions", "group", "max_new_tokens", "policy_steps", "policy_batch", "heldout",
                    "eval_seeds", "eval_every"):  # fmt: skip
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.horizon < 0 or self.token_cost < 0 or self.efficiency_groups < 0:
            raise ValueError("horizon, token_cost and efficiency_groups must be >= 0")
        if self.inner.kind != "lora":
            raise ValueError(f"inner.kind must be lora (the inner loop writes a fresh LoRA), got {self.inner.kind}")
        if self.algorithm == "pg" and self.group < 2:
            raise ValueError("pg needs group >= 2 for a group baseline")
        bad = [k for k in self.ask if k not in E.QUESTION_KEYS] if self.data is None else []
        if bad:
            raise ValueError(f"ask: unknown question kinds {bad}; use any of {', '.join(E.QUESTION_KEYS)}")
        if not self.decoding.sampled:
            raise ValueError("decoding must sample (temperature > 0): RL explores by sampling self-edits")


@dataclass
class Pools:
    """The run's fixed sessions: held-out ones with their followers, the names RL must not draw, and with
    `data` the file's training sessions."""

    heldout: list[Session]
    heldout_followers: list[list[str]]
    reserved: set[str]
    train: list[Session] | None = None
    """data: the sessions RL draws from (None: fresh ones from the world)."""
    grading: str = "world"


def build_pools(world: World | None, cfg: RLConfig) -> Pools:
    if cfg.data is not None:
        return file_pools(cfg, plain=world is None)
    if world is None:
        raise RetainError(
            f"base {cfg.base} is a model folder without a world; give the sessions: --set data=FILE.jsonl"
        )
    reserved = E.taken_names(world)
    rng = random.Random(derive_seed(cfg.seed, "rl", "heldout"))
    heldout = E.fresh_sessions(world, cfg.heldout, rng, reserved, cfg.ask)
    followers = [[R.oracle_notes(s) for s in E.fresh_sessions(world, cfg.horizon, rng, reserved)]
                 for _ in heldout]  # fmt: skip
    return Pools(heldout, followers, reserved)


def file_pools(cfg: RLConfig, plain: bool) -> Pools:
    """Held-out and training sessions from the file `cfg.data`: the last `heldout` are held out. A session's
    followers (the long horizon) are the transcripts of the sessions after it in its own pool, in file order."""
    from retain.continual.stream import _without_two_hop
    from retain.world.io import load_user_sessions

    stream = load_user_sessions(cfg.data)
    if plain:  # a two-hop question's second hop is the world's, which a plain model never read
        stream = [_without_two_hop(s) for s in stream]
    if cfg.ask:
        stream = [replace(s, questions=[q for q in s.questions if q.kind in cfg.ask]) for s in stream]
    for s in stream:
        if not s.questions:
            raise RetainError(f"session {s.index + 1} of {cfg.data} has no questions to reward; add some, or "
                              "check ask")  # fmt: skip
    if cfg.heldout >= len(stream):
        raise RetainError(f"heldout={cfg.heldout} leaves no training session of the {len(stream)} in {cfg.data}; "
                          "lower heldout")  # fmt: skip
    train, heldout = stream[: len(stream) - cfg.heldout], stream[len(stream) - cfg.heldout :]
    follow = lambda pool, i: [pool[(i + k) % len(pool)].transcript for k in range(1, cfg.horizon + 1)]  # noqa: E731
    return Pools(heldout, [follow(heldout, i) for i in range(len(heldout))], set(), train, "text")


def train_sessions(world: World | None, cfg: RLConfig, pools: Pools, it: int) -> tuple[list[Session], list[list[str]]]:
    """Iteration `it`'s sessions (fresh people outside the held-out pool, or a draw of the file's training
    sessions) and their followers."""
    rng = random.Random(derive_seed(cfg.seed, "rl", "train", it))
    if pools.train is not None:
        idx = [rng.randrange(len(pools.train)) for _ in range(cfg.sessions)]
        follow = [[pools.train[(i + k) % len(pools.train)].transcript for k in range(1, cfg.horizon + 1)] for i in idx]
        return [pools.train[i] for i in idx], follow
    reserved = set(pools.reserved)
    sessions = E.fresh_sessions(world, cfg.sessions, rng, reserved, cfg.ask)
    followers = [[R.oracle_notes(s) for s in E.fresh_sessions(world, cfg.horizon, rng, reserved)] for _ in sessions]
    return sessions, followers


def evaluate(policy, reader, tok, cfg: RLConfig, pools: Pools, texts: list[str] | None = None) -> dict[str, Any]:
    """Held-out recall after writing each held-out session's text (the policy's greedy self-edit unless
    `texts` is given), averaged over `eval_seeds` initialisations that are the same at every evaluation."""
    n = cfg.eval_seeds
    lengths = [0] * len(pools.heldout)
    if texts is None:
        greedy = E.write_edits(policy, tok, pools.heldout, 1, DecodingConfig(), cfg.max_new_tokens, 0)
        texts = [E.text_of(tok, g[0]) for g in greedy]
        lengths = [len(g[0]) for g in greedy]
    sessions = [s for s in pools.heldout for _ in range(n)]
    seeds = [derive_seed(cfg.seed, "rl", "eval", i, k) for i in range(len(pools.heldout)) for k in range(n)]
    out = E.score_writes(reader, tok, cfg.inner, [t for t in texts for _ in range(n)], sessions, seeds,
                         [f for f in pools.heldout_followers for _ in range(n)], [0] * len(sessions), 0.0,
                         cfg.group, grading=pools.grading)  # fmt: skip
    recall = sum(out.recall) / len(out.recall)
    return {"recall": recall, "texts": texts, "lengths": lengths}


def heads(tok, sessions: list[Session], cfg: RLConfig) -> list[str]:
    """Each session's transcript cut to the self-edit's budget (`max_new_tokens`): the write RL must beat at
    equal tokens, with nothing chosen."""
    return [
        tok.decode(tok(s.transcript, add_special_tokens=False)["input_ids"][: cfg.max_new_tokens]) for s in sessions
    ]


def efficiency(reader, tok, cfg: RLConfig, sessions: list[Session], texts: list[list[str]],
               followers: list[list[str]]) -> dict[str, float]:  # fmt: skip
    """Episodes per minute of the inner loop on the same self-edits: G adapters in one batched loop, and
    one adapter after another (same seeds, so both compute the same rewards)."""
    rec: dict[str, float] = {}
    for mode, batched in (("batched", True), ("unbatched", False)):
        t0, n = time.perf_counter(), 0
        for s, ts, fs in zip(sessions, texts, followers):
            seeds = [derive_seed(cfg.seed, "rl", "efficiency", s.index)] * len(ts)
            E.score_writes(reader, tok, cfg.inner, ts, [s] * len(ts), seeds, [fs] * len(ts), [0] * len(ts), 0.0,
                           cfg.group, batched=batched)  # fmt: skip
            n += len(ts)
        rec[f"{mode}_episodes_per_min"] = 60 * n / (time.perf_counter() - t0)
    rec["speedup"] = rec["batched_episodes_per_min"] / rec["unbatched_episodes_per_min"]
    return rec


def policy_update(policy, ref, tok, cfg: RLConfig, opt, prompts, edits, rewards: torch.Tensor,
                  rng: random.Random) -> dict[str, float]:  # fmt: skip
    """One iteration's update of the policy from the (sessions, G) self-edits and their rewards."""
    S, G = rewards.shape
    flat = [(prompts[i], edits[i][g]) for i in range(S) for g in range(G)]
    if cfg.algorithm == "rest_em":
        if cfg.keep == "best":
            fluency = A.mean_logprobs(ref, [f[0] for f in flat], [f[1] for f in flat], tok.pad_token_id).view(S, G)
            keep = A.rest_em_best(rewards, fluency, cfg.margin)
        else:
            keep = A.rest_em_keep(rewards, margin=cfg.margin)
        pool = [f for f, k in zip(flat, keep.flatten().tolist()) if k]
        weights = None
    else:
        pool = flat
        weights = A.group_advantages(rewards).flatten()
    stats = {"kept": len(pool) if cfg.algorithm == "rest_em" else S * G, "loss": 0.0, "kl": 0.0}
    if not pool:
        return stats
    policy.train()
    for _ in range(cfg.policy_steps):
        idx = rng.sample(range(len(pool)), min(cfg.policy_batch, len(pool)))
        ps, cs = [pool[i][0] for i in idx], [pool[i][1] for i in idx]
        logp, mask = A.completion_logprobs(policy, ps, cs, tok.pad_token_id)
        if cfg.algorithm == "rest_em":
            loss, kl = A.sft_loss(logp, mask), torch.tensor(0.0)
        else:
            with torch.no_grad():
                ref_logp, _ = A.completion_logprobs(ref, ps, cs, tok.pad_token_id)
            loss, kl = A.pg_loss(logp, ref_logp, mask, weights[idx].to(logp.device), cfg.kl)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stats["loss"] += loss.item() / cfg.policy_steps
        stats["kl"] += float(kl) / cfg.policy_steps
    policy.eval()
    return stats


def rl(cfg: RLConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Run the outer loop of `cfg`; writes metrics, checkpoints of the policy, summary.json and report.md. With
    `resume` the run's own config.yaml is used."""
    from retain.continual.stream import resolve_base
    from retain.models.build import model_config
    from retain.models.device import configure
    from retain.models.text import TextFormat, use_format

    if resume:
        cfg = resume_config(cfg, out)
    configure(cfg.device, cfg.precision)  # a device this machine lacks fails before the run dir
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b")
    base = resolve_base(cfg.base)
    world = base.world
    pools = build_pools(world, cfg)  # bad sessions or an `ask` that empties one fail before the run dir
    cfg.inner.check_model(model_config(base.model_dir))
    reader, tok = load_model_and_tokenizer(base.model_dir)
    style = base.style if cfg.prompt == "auto" else cfg.prompt
    n_shots = cfg.shots if cfg.shots is not None else (0 if style == "world" else 4)
    shots = []
    if n_shots:
        from retain.continual.stream import PROBE
        from retain.world.io import load_questions

        probe = load_questions(PROBE)
        random.Random(derive_seed(cfg.seed, "probe")).shuffle(probe)
        shots = [(q.text, q.answer) for q in probe[:n_shots]]
    use_format(tok, TextFormat.of(tok, style, shots))
    if pools.train is not None and cfg.horizon:
        print(f"note: horizon {cfg.horizon}: the followers are the transcripts of the next sessions of {cfg.data}")
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    reader.requires_grad_(False).eval()  # the frozen base: the inner loop's model and the reference policy
    policy = copy.deepcopy(reader).requires_grad_(True)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)

    start, elapsed = 0, 0.0
    if resume and (ckpt := latest_checkpoint(run.ckpt_dir)):
        tensors, meta = load_checkpoint(ckpt)
        policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy.")})
        unpack_optimizer(opt, tensors, meta["optim"])
        start, elapsed = meta["step"], meta["elapsed"]
        print(f"resumed {run.path} after iteration {start}")
    if resume:  # records past the last checkpoint (logged, then interrupted before it was saved) are redone
        run.keep_metrics(lambda r: r.get("iteration", 0) <= start)
    fixed_path = run / "fixed.json"  # what does not change with the policy: upper bound, raw, before RL
    if fixed_path.exists():
        fixed = read_json(fixed_path)
        if "transcript_head" not in fixed:  # a run from before the equal-budget baseline: add it, once
            fixed["transcript_head"] = evaluate(policy, reader, tok, cfg, pools, heads(tok, pools.heldout, cfg))
            atomic_write_json(fixed_path, fixed)
    else:
        first, first_followers = train_sessions(world, cfg, pools, 0)
        edits = E.write_edits(policy, tok, first[: cfg.efficiency_groups], cfg.group, cfg.decoding,
                              cfg.max_new_tokens, derive_seed(cfg.seed, "rl", "efficiency"))  # fmt: skip
        fixed = {
            "oracle": evaluate(policy, reader, tok, cfg, pools, [R.oracle_notes(s) for s in pools.heldout])
            if pools.train is None else None,  # a file's sessions carry no facts to write as notes
            "transcript": evaluate(policy, reader, tok, cfg, pools, [s.transcript for s in pools.heldout]),
            "transcript_head": evaluate(policy, reader, tok, cfg, pools, heads(tok, pools.heldout, cfg)),
            "before": evaluate(policy, reader, tok, cfg, pools),
            "efficiency": efficiency(reader, tok, cfg, first[: cfg.efficiency_groups],
                                     [[E.text_of(tok, e) for e in es] for es in edits],
                                     first_followers[: cfg.efficiency_groups]) if cfg.efficiency_groups else {},
        }  # fmt: skip
        atomic_write_json(fixed_path, fixed)
        run.log({"iteration": 0, "heldout_recall": fixed["before"]["recall"],
                 "heldout_length": sum(fixed["before"]["lengths"]) / len(pools.heldout)})  # fmt: skip
        oracle = f"oracle notes {fixed['oracle']['recall']:.3f}, " if fixed["oracle"] else ""
        print(f"held-out recall before RL {fixed['before']['recall']:.3f}, {oracle}"
              f"transcripts {fixed['transcript']['recall']:.3f}")  # fmt: skip

    last = fixed["before"]
    bar = progress(range(start, cfg.iterations), desc=f"rl {cfg.algorithm}", initial=start, total=cfg.iterations)
    for it in bar:
        t0 = time.perf_counter()
        sessions, followers = train_sessions(world, cfg, pools, it)
        prompts = [E.prompt_ids(tok, s) for s in sessions]
        raw = E.write_edits(policy, tok, sessions, cfg.group, cfg.decoding, cfg.max_new_tokens,
                            derive_seed(cfg.seed, "rl", "sample", it))  # fmt: skip
        edits = [[E.with_eos(tok, e, cfg.max_new_tokens) for e in es] for es in raw]
        texts = [E.text_of(tok, e) for es in raw for e in es]
        lengths = [len(e) for es in raw for e in es]
        # one initialisation per session, shared by its G self-edits (common random numbers)
        seeds = [derive_seed(cfg.seed, "rl", "write", it, i) for i in range(len(sessions)) for _ in range(cfg.group)]
        scored = E.score_writes(reader, tok, cfg.inner, texts, [s for s in sessions for _ in range(cfg.group)], seeds,
                                [f for f in followers for _ in range(cfg.group)], lengths, cfg.token_cost,
                                cfg.group, reward=cfg.reward, grading=pools.grading)  # fmt: skip
        rewards = torch.tensor(scored.reward).view(len(sessions), cfg.group)
        stats = policy_update(policy, reader, tok, cfg, opt, prompts, edits, rewards,
                              random.Random(derive_seed(cfg.seed, "rl", "update", it)))  # fmt: skip
        record = {"iteration": it + 1, "reward": float(rewards.mean()), "recall": sum(scored.recall) / len(texts),
                  "answer_logprob": sum(scored.answer_logprob) / len(texts),
                  "reward_best": float(rewards.max(1).values.mean()), "length": sum(lengths) / len(lengths),
                  "inner_tokens": scored.tokens, **stats}  # fmt: skip
        if (it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iterations:
            last = evaluate(policy, reader, tok, cfg, pools)
            record |= {"heldout_recall": last["recall"], "heldout_length": sum(last["lengths"]) / len(pools.heldout)}
        elapsed += time.perf_counter() - t0
        record["seconds"] = round(elapsed, 1)
        run.log(record)
        bar.set_postfix(reward=f"{record['reward']:.3f}", heldout=f"{last['recall']:.3f}")
        tensors = {f"policy.{k}": v for k, v in policy.state_dict().items()}
        o_t, o_m = pack_optimizer(opt)
        save_checkpoint(run.ckpt_dir, it + 1, {**tensors, **o_t}, {"optim": o_m, "elapsed": elapsed})
        atomic_write_json(run / "last_eval.json", last)
    if start >= cfg.iterations and (run / "last_eval.json").exists():
        last = read_json(run / "last_eval.json")
    summary = summarize(cfg, fixed, last, run.metrics(), elapsed)
    run.write_summary(summary)
    from retain.rl.report import write_report

    write_report(run, cfg, fixed, last, pools, summary)
    return {**summary, "report": str(run / "report.md")}


def summarize(cfg: RLConfig, fixed: dict, last: dict, records: list[dict], elapsed: float) -> dict[str, Any]:
    before, after = fixed["before"], last
    episodes = sum(1 for r in records if "reward" in r) * cfg.sessions * cfg.group
    return {
        "algorithm": cfg.algorithm,
        "heldout_before": before["recall"],
        "heldout_after": after["recall"],
        "gain_pt": 100 * (after["recall"] - before["recall"]),
        "heldout_oracle": fixed["oracle"]["recall"] if fixed["oracle"] else None,
        "heldout_transcript": fixed["transcript"]["recall"],
        "heldout_transcript_head": fixed["transcript_head"]["recall"],
        # RL's gain over the best write of the same budget that needs no learning: its own notes or the cut transcript
        "gain_equal_budget_pt": 100 * (after["recall"] - max(before["recall"], fixed["transcript_head"]["recall"])),
        "length_before": sum(before["lengths"]) / len(before["lengths"]),
        "length_after": sum(after["lengths"]) / len(after["lengths"]),
        "episodes": episodes,
        "rl_seconds": round(elapsed, 1),
        **fixed.get("efficiency", {}),
    }


def main(cfg: RLConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain rl`."""
    s = rl(cfg, out, resume)
    oracle = f"oracle notes {s['heldout_oracle']:.3f}, " if s["heldout_oracle"] is not None else ""
    print(f"held-out recall: before RL {s['heldout_before']:.3f} -> after {s['heldout_after']:.3f} "
          f"({s['gain_pt']:+.1f} pt); {oracle}transcripts "
          f"{s['heldout_transcript']:.3f}; {s['episodes']} episodes in {s['rl_seconds']:.0f}s")  # fmt: skip
    print(f"report: {s['report']}")
