"""What to write under a budget, as a value-based RL problem with a large action space (`retain stochq`,
`env: write`).

State: the session's first `max_facts` facts, each as its attribute (one-hot). Action: a subset of at most
`budget` of them (sum over j <= budget of C(max_facts, j) actions: exponential in the facts). Reward: exact-match
recall of the session's later questions (only the `ask` attributes) after the chosen facts, one plain sentence
each, are written into a fresh LoRA by the RL inner loop (`retain.rl.episode.score_writes`). One write is one
step, so the TD target is the reward itself (a contextual bandit); stochmax matters in the choice.

Baselines on the same held-out sessions: the first `budget` facts in the session's order, every fact (no
budget), and the best subset (the asked facts, which the policy can only learn from rewards).
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from retain.errors import RetainError
from retain.rl.stochq import DeepQ, job_name, replay_sizes, resume_agent, save_agent
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed
from retain.world import render as R
from retain.world.world import ATTRIBUTES, Session


@dataclass
class WriteConfig:
    """The write-selection task of `retain stochq` (`env: write`)."""

    base: str = "runs/base"
    """A pretraining run (model/ and world/): its reader is the inner loop's model."""
    budget: int = 3
    """Most facts written per session."""
    max_facts: int = 8
    """The session's first facts the policy chooses among (a session with fewer is an error)."""
    ask: list[str] = field(default_factory=lambda: ["home_city", "employer", "field"])
    """The attributes later questions ask about (as configs/rl_ask.yaml)."""
    sessions: int = 16
    """Fresh sessions per training step (written in one batched loop)."""
    heldout: int = 48
    """Held-out sessions the greedy policy and the baselines are evaluated on."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be at least one fact, got {self.budget}")
        if self.max_facts < self.budget:
            raise ValueError(f"max_facts ({self.max_facts}) must be >= budget ({self.budget})")
        bad = [a for a in self.ask if a not in ATTRIBUTES]
        if bad or not self.ask:
            raise ValueError(f"ask {bad or '[]'}: name recall attributes ({', '.join(ATTRIBUTES)})")
        for key in ("sessions", "heldout"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")


def subsets(m: int, k: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of range(m) with at most k members: the action space."""
    return [c for j in range(1, k + 1) for c in itertools.combinations(range(m), j)]


def masks(actions: list[tuple[int, ...]], m: int) -> torch.Tensor:
    """Each action as its m-bit mask: the action's features for the Q network."""
    out = torch.zeros(len(actions), m)
    for i, a in enumerate(actions):
        out[i, list(a)] = 1.0
    return out


def state(session: Session, m: int) -> torch.Tensor:
    """The first m facts' attributes, one-hot, flattened."""
    out = torch.zeros(m, len(ATTRIBUTES))
    for i, f in enumerate(session.facts[:m]):
        out[i, ATTRIBUTES.index(f.attribute)] = 1.0
    return out.flatten()


def text(session: Session, positions: tuple[int, ...]) -> str:
    """What is written: the chosen facts, one plain sentence each, in the session's order."""
    return " ".join(R.canonical_sentence(session.facts[i]) for i in sorted(positions))


class WriteTask:
    """Fresh sessions, the action space, and the inner loop that turns chosen facts into recall."""

    def __init__(self, cfg: WriteConfig, seed: int):
        from retain.continual.stream import resolve_base
        from retain.models.build import load_model_and_tokenizer
        from retain.models.text import TextFormat, use_format
        from retain.rl.episode import inner_default, taken_names

        base = resolve_base(cfg.base)
        if base.world is None:
            raise RetainError(f"base '{cfg.base}' has no world; env write asks about the world's people")
        self.cfg, self.world = cfg, base.world
        self.reader, self.tok = load_model_and_tokenizer(base.model_dir)
        use_format(self.tok, TextFormat.of(self.tok, "world"))
        self.reader.requires_grad_(False).eval()
        self.inner = inner_default()
        self.reserved = taken_names(self.world)
        self.heldout = self.draw(cfg.heldout, random.Random(derive_seed(seed, "write", "heldout")))
        self.actions = subsets(cfg.max_facts, cfg.budget)
        self.features = masks(self.actions, cfg.max_facts)
        self.heldout_states = [state(s, cfg.max_facts) for s in self.heldout]

    def draw(self, n: int, rng: random.Random) -> list[Session]:
        """`n` fresh sessions (their people kept out of later draws), each with at least `max_facts` facts."""
        from retain.rl.episode import fresh_sessions

        out = fresh_sessions(self.world, n, rng, self.reserved, self.cfg.ask)
        short = [len(s.facts) for s in out if len(s.facts) < self.cfg.max_facts]
        if short:
            raise RetainError(f"a session states {min(short)} facts, fewer than max_facts {self.cfg.max_facts}; "
                              "lower max_facts")  # fmt: skip
        return out

    def recall(self, sessions: list[Session], texts: list[str], seeds: list[int]) -> list[float]:
        """Write each text into a fresh adapter (all at once) and ask its session's questions."""
        from retain.rl.episode import score_writes

        out = score_writes(self.reader, self.tok, self.inner, texts, sessions, seeds, [[] for _ in sessions],
                           [0] * len(sessions), 0.0, group=len(sessions))  # fmt: skip
        return out.recall

    def heldout_recall(self, chosen: list[tuple[int, ...]]) -> float:
        """Mean recall of the held-out sessions written with the `chosen` facts of each (the same adapter seeds
        for every writer, learned or fixed)."""
        texts = [text(s, c) for s, c in zip(self.heldout, chosen)]
        return sum(self.recall(self.heldout, texts, [derive_seed("heldout", i) for i in range(len(texts))])) / len(
            texts
        )

    def best(self, session: Session) -> tuple[int, ...]:
        """The subset an oracle would write: the new people's asked facts (the first `budget` of them)."""
        asked = [i for i, f in enumerate(session.facts[: self.cfg.max_facts])
                 if f.attribute in self.cfg.ask and f.entity in session.new_entities]  # fmt: skip
        return tuple(asked[: self.cfg.budget]) or (0,)


def write_job(cfg, run: RunDir, task: WriteTask, agent: str, seed: int) -> dict[str, Any]:
    """Learn which facts to write (`env: write`): each step writes `write.sessions` fresh sessions with the
    chosen subsets in one batched inner loop; the greedy policy (exact max) is evaluated on the held-out sessions
    every `ckpt_every` steps and at the end. Resumes from its checkpoint."""
    w, n = cfg.write, len(task.actions)
    batch, buffer = replay_sizes(n, cfg.batch_size, cfg.buffer)
    q = DeepQ(len(task.heldout_states[0]), task.features, stoch=agent == "stochdqn", lr=cfg.lr, gamma=0.0,
              batch_size=batch, buffer=buffer, hidden=cfg.hidden, seed=derive_seed(seed, "init"))  # fmt: skip
    rng, ckdir = random.Random(derive_seed(seed, agent, "write")), run.ckpt_dir / job_name(agent, n, seed)
    loop = resume_agent(q, ckdir, rng) or {"eps": 1.0, "log": []}
    eps, log = loop["eps"], loop["log"]
    bar = progress(total=cfg.episodes, initial=len(log), desc=job_name(agent, n, seed), leave=False)
    for step in range(len(log), cfg.episodes):
        sessions = task.draw(w.sessions, random.Random(derive_seed(seed, "write", step)))
        states = [state(s, w.max_facts) for s in sessions]
        t0, evaluated, acts = time.perf_counter(), q.evaluated, []
        for st in states:
            acts.append(q.act(st, eps, rng))
            eps = max(cfg.epsilon_min, eps * cfg.epsilon_decay)
        spent = time.perf_counter() - t0
        rewards = task.recall(sessions, [text(s, task.actions[a]) for s, a in zip(sessions, acts)],
                              [derive_seed(seed, "adapter", step, i) for i in range(len(sessions))])  # fmt: skip
        t0 = time.perf_counter()
        for st, a, r in zip(states, acts, rewards):  # one write is one step: the target is the reward
            q.learn((st, a, r, st, 1.0), rng)
        q.sync()
        spent += time.perf_counter() - t0
        record = {"episode": step, "return": sum(rewards) / len(rewards), "step_seconds": spent / len(sessions),
                  "evaluated_per_step": (q.evaluated - evaluated) / len(sessions)}  # fmt: skip
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.episodes:
            record["heldout"] = task.heldout_recall([task.actions[greedy(q, st)] for st in task.heldout_states])
        log.append(record)
        bar.update(1)
        bar.set_postfix({"reward": f"{record['return']:.2f}"})
        if (step + 1) % cfg.ckpt_every == 0 and step + 1 < cfg.episodes:
            save_agent(q, ckdir, step + 1, rng, {"eps": eps, "log": log})
    bar.close()
    return {"agent": agent, "n": n, "seed": seed, "episodes": log, "test_return": log[-1]["heldout"]}


def greedy(q: DeepQ, st: torch.Tensor) -> int:
    """The exact argmax of Q over every action (evaluation, as the reference tests its agents)."""
    with torch.no_grad():
        return int(q.net.grid(st[None], q.features).argmax())


def write_baselines(task: WriteTask) -> dict[str, float]:
    """Held-out recall of the fixed writers: the first `budget` facts, every fact (no budget), the asked facts."""
    k = task.cfg.budget
    out = {name: task.heldout_recall([pick(s) for s in task.heldout])
           for name, pick in (("first_k", lambda s: tuple(range(k))),
                              ("all_facts", lambda s: tuple(range(len(s.facts)))),
                              ("best_subset", task.best))}  # fmt: skip
    return out | {"budget": k, "max_facts": task.cfg.max_facts}
