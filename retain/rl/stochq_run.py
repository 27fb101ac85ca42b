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
from retain.rl.control import discretised, policy_value, table_mdp, value_iteration
from retain.rl.stochq import DeepQ, TabularQ, job_name, replay_sizes, resume_agent, save_agent
from retain.rl.write_select import WriteConfig, write_baselines, write_job
from retain.runs.files import atomic_write_json, read_json
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed

DEEP = ("dqn", "stochdqn", "random")
TABULAR = ("q", "stochq")
WRITE = ("dqn", "stochdqn")


@dataclass
class StochQConfig:
    """A comparison of agents over action-space sizes and seeds, on one environment."""

    name: str = "stochq"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    env: str = "Pendulum-v1"
    """A gymnasium task with a continuous action space (discretised), `table` (a random MDP, known Q*), or `write`
    (which of a session's facts to write under a budget; `write:` below)."""
    agents: list[str] = field(default_factory=lambda: ["dqn", "stochdqn", "random"])
    """gymnasium: dqn, stochdqn, random; table: q, stochq; write: dqn, stochdqn."""
    n_actions: list[int] = field(default_factory=lambda: [256, 1024, 4096])
    """Sizes of the discrete action space (write: set by max_facts and budget)."""
    write: WriteConfig = field(default_factory=WriteConfig)
    """env write: the task (its episodes are training steps of `write.sessions` writes each)."""
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
        known = {"table": TABULAR, "write": WRITE}.get(self.env, DEEP)
        bad = [a for a in self.agents if a not in known]
        if bad or not self.agents:
            raise ValueError(f"agents {bad or '[]'} are not agents of env '{self.env}': choose from {', '.join(known)}")
        if not self.n_actions or min(self.n_actions) < 2:
            raise ValueError(f"n_actions must list sizes >= 2 (an action space of one action has nothing to choose), "
                             f"got {self.n_actions}")  # fmt: skip
        for key in ("episodes", "max_steps", "test_episodes", "ckpt_every", "hidden", "target_every", "n_states"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("batch_size", "buffer"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive or null, got {getattr(self, key)}")
        if not 0 < self.gamma < 1 or self.lr <= 0 or not 0 < self.epsilon_decay <= 1 or not 0 <= self.epsilon_min <= 1:
            raise ValueError("need 0 < gamma < 1, lr > 0, 0 < epsilon_decay <= 1 and 0 <= epsilon_min <= 1")


def deep_job(cfg: StochQConfig, run: RunDir, agent: str, n: int, seed: int) -> dict[str, Any]:
    """Train one agent on the discretised task for `episodes`, then test it greedily; resumes from its checkpoint."""
    env, feats = discretised(cfg.env, n)
    batch, buffer = replay_sizes(n, cfg.batch_size, cfg.buffer)
    q = DeepQ(env.observation_space.shape[0], feats, stoch=agent == "stochdqn", lr=cfg.lr, gamma=cfg.gamma,
              batch_size=batch, buffer=buffer, hidden=cfg.hidden, seed=derive_seed(seed, "init"))  # fmt: skip
    rng, ckdir = random.Random(derive_seed(seed, agent, n)), run.ckpt_dir / job_name(agent, n, seed)
    loop = resume_agent(q, ckdir, rng) or {"eps": 1.0, "steps": 0, "log": []}
    eps, steps, log = loop["eps"], loop["steps"], loop["log"]
    tensor = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    bar = progress(total=cfg.episodes, initial=len(log), desc=job_name(agent, n, seed), leave=False)
    for ep in range(len(log), cfg.episodes):
        obs, _ = env.reset(seed=derive_seed(seed, "episode", ep))
        total, spent, done, t, evaluated = 0.0, 0.0, False, 0, q.evaluated
        while not done and t < cfg.max_steps:
            s, t0 = tensor(obs), time.perf_counter()
            a = rng.randrange(n) if agent == "random" else q.act(s, eps, rng)
            spent += time.perf_counter() - t0
            obs, r, term, trunc, _ = env.step(a)
            done, t, steps, total = term or trunc, t + 1, steps + 1, total + float(r)
            if agent != "random":
                t0 = time.perf_counter()
                q.learn((s, a, float(r) * cfg.reward_scale, tensor(obs), float(term)), rng)
                if steps % cfg.target_every == 0:
                    q.sync()
                spent += time.perf_counter() - t0
            eps = max(cfg.epsilon_min, eps * cfg.epsilon_decay)
        log.append({"episode": ep, "return": total, "step_seconds": spent / t,
                    "evaluated_per_step": (q.evaluated - evaluated) / t})  # fmt: skip
        bar.update(1)
        bar.set_postfix({"return": f"{total:.0f}"})
        if (ep + 1) % cfg.ckpt_every == 0 and ep + 1 < cfg.episodes:
            save_agent(q, ckdir, ep + 1, rng, {"eps": eps, "steps": steps, "log": log})
    bar.close()
    tests = []
    for i in range(cfg.test_episodes):  # greedy with the agent's own maximisation, the same seeds for every agent
        obs, _ = env.reset(seed=derive_seed("test", i))
        total, done, t = 0.0, False, 0
        while not done and t < cfg.max_steps:
            a = rng.randrange(n) if agent == "random" else q.act(tensor(obs), 0.0, rng)
            obs, r, term, trunc, _ = env.step(a)
            done, t, total = term or trunc, t + 1, total + float(r)
        tests.append(total)
    return {"agent": agent, "n": n, "seed": seed, "episodes": log, "test_returns": tests,
            "test_return": sum(tests) / len(tests), "batch_size": batch}  # fmt: skip


def table_job(cfg: StochQConfig, agent: str, n: int, seed: int) -> dict[str, Any]:
    """Q-learning on a random table MDP (seeded by `seed`) for `episodes` of `max_steps`; the greedy policy's
    value is compared with the optimum (value iteration). Seconds, not minutes: no checkpoint."""
    mdp = table_mdp(cfg.n_states, n, derive_seed(seed, "mdp"))
    q, rng, eps, log = TabularQ(cfg.n_states, n, cfg.gamma, stoch=agent == "stochq"), random.Random(seed), 1.0, []
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
    task, sizes = None, cfg.n_actions
    if cfg.env == "write":  # a base without a world fails here, before the run directory
        from retain.rl.write_select import WriteTask

        task = WriteTask(cfg.write, seed=cfg.seeds[0])
        sizes = [len(task.actions)]
    elif cfg.env != "table":
        discretised(cfg.env, cfg.n_actions[0])  # an unknown task or an impossible size fails here too
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    (run / "jobs").mkdir(exist_ok=True)
    results = []
    for agent, n, seed in progress([(a, n, s) for n in sizes for s in cfg.seeds for a in cfg.agents], desc="jobs"):
        path = run / "jobs" / f"{job_name(agent, n, seed)}.json"
        if not path.exists():
            if cfg.env == "table":
                res = table_job(cfg, agent, n, seed)
            elif cfg.env == "write":
                res = write_job(cfg, run, task, agent, seed)
            else:
                res = deep_job(cfg, run, agent, n, seed)
            atomic_write_json(path, res)
        results.append(read_json(path))
    baselines = None
    if task is not None:
        path = run / "jobs" / "baselines.json"
        if not path.exists():
            atomic_write_json(path, write_baselines(task))
        baselines = read_json(path)
    summary = summarize(cfg, results, baselines)
    run.write_summary(summary)
    from retain.rl.stochq_report import write_report

    write_report(run, cfg, results, summary)
    return summary


def summarize(cfg: StochQConfig, results: list[dict], baselines: dict | None = None) -> dict[str, Any]:
    """Per agent and n (means over seeds): seconds and Q evaluations per step, final return; and the ratios the
    targets read (stochastic against exact at the largest n; write: held-out recall against the fixed writers)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(f"{r['agent']}-n{r['n']}", {"agent": r["agent"], "n": r["n"], "runs": []})
        eps = r["episodes"]
        row["runs"].append({"seed": r["seed"], "step_seconds": sum(e["step_seconds"] for e in eps) / len(eps),
                            "evaluated_per_step": sum(e["evaluated_per_step"] for e in eps) / len(eps),
                            "final": r["test_return"],
                            **({"q_error": r["q_error"]} if "q_error" in r else {})})  # fmt: skip
    for row in rows.values():
        for key in ("step_seconds", "evaluated_per_step", "final"):
            row[key] = sum(x[key] for x in row["runs"]) / len(row["runs"])
    exact, stoch = ("q", "stochq") if cfg.env == "table" else ("dqn", "stochdqn")
    n = max(r["n"] for r in results)
    e, s, rnd = rows.get(f"{exact}-n{n}"), rows.get(f"{stoch}-n{n}"), rows.get(f"random-n{n}")
    out: dict[str, Any] = {"env": cfg.env, "rows": rows}
    if e and s:
        out["speedup"] = e["step_seconds"] / s["step_seconds"]
        base = rnd["final"] if rnd else 0.0  # returns above the random policy's (Pendulum's are negative)
        out["return_ratio"] = (s["final"] - base) / (e["final"] - base) if e["final"] != base else None
        out["at_n"] = n
    if baselines is not None:
        out["baselines"] = baselines
        if s:
            out["gain_over_first_k"] = s["final"] - baselines["first_k"]
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
    for name, value in s.get("baselines", {}).items():
        if name not in ("budget", "max_facts"):
            print(f"{name:>11}: held-out recall {value:.3f}")
    if "gain_over_first_k" in s:
        print(f"stochastic-Q writer against the first {cfg.write.budget} facts: {s['gain_over_first_k'] * 100:+.1f} pt")
