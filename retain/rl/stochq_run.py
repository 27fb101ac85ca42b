"""`retain stochq`: exact against stochastic maximisation in value-based RL, over action spaces of n actions.

    retain stochq configs/stochq/pendulum.yaml --out runs/stochq-pendulum      # DQN vs StochDQN, n = 256..4096
    retain stochq configs/stochq/table.yaml --out runs/stochq-table            # Q-learning vs stochastic, known Q*
    retain stochq --out runs/stochq-pendulum --resume

Each (agent, n, seed) is a job. A job checkpoints every `ckpt_every` episodes (network, optimiser, replay
buffer, the generators' states), so a resumed run takes the steps an uninterrupted one takes; a finished job
is kept in `jobs/`. Time per step is wall time of the agent's choice and its update (the environment's step
excluded), compared as a ratio between agents of the same run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from retain.config import resume_config
from retain.errors import RetainError
from retain.rl.control import discretised, policy_value, table_mdp, value_iteration
from retain.rl.stochq import DeepQ, TabularQ
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

DEEP = ("dqn", "stochdqn", "random")
TABULAR = ("q", "stochq")


@dataclass
class StochQConfig:
    """A comparison of agents over action-space sizes and seeds, on one environment."""

    name: str = "stochq"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    env: str = "Pendulum-v1"
    """A gymnasium task with a continuous action space (discretised), or `table` (a random MDP, known Q*)."""
    agents: list[str] = field(default_factory=lambda: ["dqn", "stochdqn", "random"])
    """gymnasium: dqn, stochdqn, random; table: q, stochq."""
    n_actions: list[int] = field(default_factory=lambda: [256, 1024, 4096])
    """Sizes of the discrete action space."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One job per agent, size and seed."""
    episodes: int = 60
    """Training episodes per job."""
    max_steps: int = 200
    """Steps per episode (gymnasium tasks also stop at their own limit)."""
    gamma: float = 0.99
    """Discount."""
    lr: float = 1e-3
    """Adam learning rate (deep) or the table's step size (table)."""
    epsilon_decay: float = 0.995
    """epsilon starts at 1 and is multiplied by this after every step (the reference: 0.995)..."""
    epsilon_min: float = 0.01
    """...down to this."""
    batch_size: int | None = None
    """Replay batch; None: 2 ceil(log2 n), as the reference."""
    buffer: int | None = None
    """Replay buffer length; None: 2 x the batch, as the reference."""
    hidden: int = 64
    """Width of the Q network's two hidden layers."""
    target_every: int = 1
    """Steps between target-network copies (the reference copies after every step)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for learning (returns are reported unscaled)."""
    test_episodes: int = 5
    """Greedy episodes after training (the same environment seeds for every agent): the final return."""
    n_states: int = 10
    """table: states of the random MDP."""
    ckpt_every: int = 5
    """Episodes between checkpoints of a running job."""
    threads: int | None = 1
    """torch CPU threads (1: time per step is not muddied by thread scheduling)."""

    def __post_init__(self) -> None:
        known = TABULAR if self.env == "table" else DEEP
        bad = [a for a in self.agents if a not in known]
        if bad or not self.agents:
            raise ValueError(
                f"agents {bad or '[]'} are not agents of env '{self.env}': choose from {', '.join(known)}"
            )
        if not self.n_actions or min(self.n_actions) < 2:
            raise ValueError(f"n_actions must list sizes >= 2 (an action space of one action has nothing to choose), "
                             f"got {self.n_actions}")  # fmt: skip
        for key in (
            "episodes",
            "max_steps",
            "test_episodes",
            "ckpt_every",
            "hidden",
            "target_every",
            "n_states",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("batch_size", "buffer"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive or null, got {getattr(self, key)}")
        if (
            not 0 < self.gamma < 1
            or self.lr <= 0
            or not 0 < self.epsilon_decay <= 1
            or not 0 <= self.epsilon_min <= 1
        ):
            raise ValueError("need 0 < gamma < 1, lr > 0, 0 < epsilon_decay <= 1 and 0 <= epsilon_min <= 1")


def job_name(agent: str, n: int, seed: int) -> str:
    return f"{agent}-n{n}-s{seed}"


def _rng_meta(rng: random.Random) -> list:
    v, state, gauss = rng.getstate()
    return [v, list(state), gauss]


def _rng_from(meta: list) -> random.Random:
    rng = random.Random()
    rng.setstate((meta[0], tuple(meta[1]), meta[2]))
    return rng


def deep_job(cfg: StochQConfig, run: RunDir, agent: str, n: int, seed: int) -> dict[str, Any]:
    """Train one agent on the discretised task for `episodes`, then test it greedily; resumes from its checkpoint."""
    env, feats = discretised(cfg.env, n)
    batch = cfg.batch_size or 2 * max(1, (n - 1).bit_length())
    q = DeepQ(env.observation_space.shape[0], feats, stoch=agent == "stochdqn", lr=cfg.lr, gamma=cfg.gamma,
              batch_size=batch, buffer=cfg.buffer or 2 * batch, hidden=cfg.hidden, seed=derive_seed(seed, "init"))  # fmt: skip
    rng, eps, steps, log = random.Random(derive_seed(seed, agent, n)), 1.0, 0, []
    ckdir = run.ckpt_dir / job_name(agent, n, seed)
    if ckpt := latest_checkpoint(ckdir):
        state, meta = load_checkpoint(ckpt)
        q.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        q.target.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("target.")})
        unpack_optimizer(q.opt, state, meta["optim"])
        if meta["buf_a"]:
            q.buffer = list(
                zip(state["buf.s"], meta["buf_a"], meta["buf_r"], state["buf.s2"], meta["buf_done"])
            )
        q.pos = meta["buf_pos"]
        rng, eps, steps, log, q.evaluated = (
            _rng_from(meta["rng"]),
            meta["eps"],
            meta["steps"],
            meta["log"],
            meta["evaluated"],
        )
    bar = progress(total=cfg.episodes, initial=len(log), desc=job_name(agent, n, seed), leave=False)
    for ep in range(len(log), cfg.episodes):
        obs, _ = env.reset(seed=derive_seed(seed, "episode", ep))
        total, spent, done, t = 0.0, 0.0, False, 0
        evaluated = q.evaluated
        while not done and t < cfg.max_steps:
            s = torch.as_tensor(obs, dtype=torch.float32)
            t0 = time.perf_counter()
            a = rng.randrange(n) if agent == "random" else q.act(s, eps, rng)
            spent += time.perf_counter() - t0
            obs, r, term, trunc, _ = env.step(a)
            done, t, steps, total = term or trunc, t + 1, steps + 1, total + float(r)
            if agent != "random":
                t0 = time.perf_counter()
                q.learn(
                    (
                        s,
                        a,
                        float(r) * cfg.reward_scale,
                        torch.as_tensor(obs, dtype=torch.float32),
                        float(term),
                    ),
                    rng,
                )
                if steps % cfg.target_every == 0:
                    q.sync()
                spent += time.perf_counter() - t0
            eps = max(cfg.epsilon_min, eps * cfg.epsilon_decay)
        log.append(
            {
                "episode": ep,
                "return": total,
                "step_seconds": spent / t,
                "evaluated_per_step": (q.evaluated - evaluated) / t,
            }
        )
        bar.update(1)
        bar.set_postfix({"return": f"{total:.0f}"})
        if (ep + 1) % cfg.ckpt_every == 0 and ep + 1 < cfg.episodes:
            o_t, o_m = pack_optimizer(q.opt)
            buf = q.buffer
            tensors = {**{f"net.{k}": v for k, v in q.net.state_dict().items()},
                       **{f"target.{k}": v for k, v in q.target.state_dict().items()}, **o_t}  # fmt: skip
            if buf:  # the random agent learns nothing and keeps no buffer
                tensors |= {
                    "buf.s": torch.stack([b[0] for b in buf]),
                    "buf.s2": torch.stack([b[3] for b in buf]),
                }
            save_checkpoint(ckdir, ep + 1, tensors, {"optim": o_m, "rng": _rng_meta(rng), "eps": eps, "steps": steps,
                            "log": log, "evaluated": q.evaluated, "buf_a": [b[1] for b in buf],
                            "buf_r": [b[2] for b in buf], "buf_done": [b[4] for b in buf], "buf_pos": q.pos})  # fmt: skip
    bar.close()
    tests = []
    for i in range(
        cfg.test_episodes
    ):  # greedy with the agent's own maximisation, the same seeds for every agent
        obs, _ = env.reset(seed=derive_seed("test", i))
        total, done, t = 0.0, False, 0
        while not done and t < cfg.max_steps:
            a = (
                rng.randrange(n)
                if agent == "random"
                else q.act(torch.as_tensor(obs, dtype=torch.float32), 0.0, rng)
            )
            obs, r, term, trunc, _ = env.step(a)
            done, t, total = term or trunc, t + 1, total + float(r)
        tests.append(total)
    return {"agent": agent, "n": n, "seed": seed, "episodes": log, "test_returns": tests,
            "test_return": sum(tests) / len(tests), "batch_size": batch}  # fmt: skip


def table_job(cfg: StochQConfig, agent: str, n: int, seed: int) -> dict[str, Any]:
    """Q-learning on a random table MDP (seeded by `seed`) for `episodes` of `max_steps`; the greedy policy's
    value is compared with the optimum (value iteration). Seconds, not minutes: no checkpoint."""
    mdp = table_mdp(cfg.n_states, n, derive_seed(seed, "mdp"))
    q, rng, eps, log = (
        TabularQ(cfg.n_states, n, cfg.gamma, stoch=agent == "stochq"),
        random.Random(seed),
        1.0,
        [],
    )
    v_star = value_iteration(mdp, cfg.gamma).max(1).values
    for ep in range(cfg.episodes):
        s, total, spent, before = rng.randrange(cfg.n_states), 0.0, 0.0, q.evaluated
        for _ in range(cfg.max_steps):
            t0 = time.perf_counter()
            a = q.act(s, eps, rng)
            s2, r = int(mdp.next[s, a]), float(mdp.reward[s, a])
            q.update(s, a, r, s2, False, cfg.lr, rng)
            spent += time.perf_counter() - t0
            s, total, eps = s2, total + r, max(cfg.epsilon_min, eps * cfg.epsilon_decay)
        greedy = policy_value(mdp, q.q.argmax(1), cfg.gamma)
        log.append({"episode": ep, "return": total, "step_seconds": spent / cfg.max_steps,
                    "evaluated_per_step": (q.evaluated - before) / cfg.max_steps,
                    "value_ratio": float((greedy / v_star).mean())})  # fmt: skip
    return {"agent": agent, "n": n, "seed": seed, "episodes": log, "test_return": log[-1]["value_ratio"],
            "q_error": float((q.q.max(1).values - v_star).abs().max())}  # fmt: skip


def stochq(cfg: StochQConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every job not yet finished; write summary.json, report.md and the plots."""
    if resume:
        cfg = resume_config(cfg, out)
    if cfg.env != "table":
        discretised(
            cfg.env, cfg.n_actions[0]
        )  # an unknown task or an impossible size fails before the run directory
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    (run / "jobs").mkdir(exist_ok=True)
    jobs = [(a, n, s) for n in cfg.n_actions for s in cfg.seeds for a in cfg.agents]
    results = []
    for agent, n, seed in progress(jobs, desc="jobs"):
        path = run / "jobs" / f"{job_name(agent, n, seed)}.json"
        if not path.exists():
            res = table_job(cfg, agent, n, seed) if cfg.env == "table" else deep_job(cfg, run, agent, n, seed)
            atomic_write_json(path, res)
        results.append(read_json(path))
    summary = summarize(cfg, results)
    run.write_summary(summary)
    from retain.rl.stochq_report import write_report

    write_report(run, cfg, results, summary)
    return summary


def summarize(cfg: StochQConfig, results: list[dict]) -> dict[str, Any]:
    """Per agent and n (means over seeds): seconds and Q evaluations per step, final return; and the ratios the
    targets read (stochastic against exact at the largest n)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(f"{r['agent']}-n{r['n']}", {"agent": r["agent"], "n": r["n"], "runs": []})
        eps = r["episodes"]
        row["runs"].append({"seed": r["seed"], "step_seconds": sum(e["step_seconds"] for e in eps) / len(eps),
                            "evaluated_per_step": sum(e["evaluated_per_step"] for e in eps) / len(eps),
                            "final": r["test_return"], **({"q_error": r["q_error"]} if "q_error" in r else {})})  # fmt: skip
    for row in rows.values():
        for key in ("step_seconds", "evaluated_per_step", "final"):
            row[key] = sum(x[key] for x in row["runs"]) / len(row["runs"])
    exact, stoch = ("q", "stochq") if cfg.env == "table" else ("dqn", "stochdqn")
    n = max(cfg.n_actions)
    e, s, rnd = rows.get(f"{exact}-n{n}"), rows.get(f"{stoch}-n{n}"), rows.get(f"random-n{n}")
    out: dict[str, Any] = {"env": cfg.env, "rows": rows}
    if e and s:
        out["speedup"] = e["step_seconds"] / s["step_seconds"]
        base = rnd["final"] if rnd else 0.0  # returns above the random policy's (Pendulum's are negative)
        out["return_ratio"] = (s["final"] - base) / (e["final"] - base) if e["final"] != base else None
        out["at_n"] = n
    return out


def main(cfg: StochQConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain stochq`."""
    s = stochq(cfg, out, resume)
    for row in s["rows"].values():
        print(
            f"{row['agent']:>9} n={row['n']:<5} {row['step_seconds'] * 1e3:8.2f} ms/step  "
            f"{row['evaluated_per_step']:9.0f} Q/step  final {row['final']:.3f}"
        )
    if "speedup" in s:
        ratio = "-" if s["return_ratio"] is None else f"{s['return_ratio']:.2f}"
        print(
            f"at n = {s['at_n']}: stochastic {s['speedup']:.1f}x less time per step; final return {ratio} x exact's"
            + (" (above the random policy)" if cfg.env != "table" else "")
        )
    if not s["rows"]:
        raise RetainError("no job ran")
