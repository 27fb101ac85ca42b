"""Stochastic Q-learning (Fourati et al., ICML 2024): the max over n actions in the TD target and in the
greedy choice is replaced by a max over ceil(log2 n) actions drawn uniformly plus a few remembered ones, so a
step costs O(log n) Q evaluations instead of O(n).

- `candidates`, `stochmax`: the candidate set and the max over it.
- `TabularQ`: Q-learning on a table, exact (`stoch=False`) or stochastic. Its memory is, per state, the last
  stochastic argmax found there (so once the best action is found it stays a candidate: the max the stochastic
  target reaches never falls back) plus the most recent actions played, up to ceil(log2 n) in all.
- `DeepQ`: DQN with the action as an input of the Q network (MLP 64-64-1, as the reference code), exact or
  stochastic (StochDQN: the candidates are ceil(log2 n) random actions plus the actions of the replay batch).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from retain.errors import RetainError
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    save_checkpoint,
    unpack_optimizer,
)


def log_n(n: int) -> int:
    """ceil(log2 n): how many actions stochmax draws (and at most how many it remembers)."""
    return max(1, math.ceil(math.log2(n)))


def candidates(n: int, remembered: Sequence[int], rng: random.Random) -> list[int]:
    """ceil(log2 n) actions drawn uniformly without replacement, then the remembered ones not drawn: the set
    stochmax maximises over (order: drawn first)."""
    if n < 2:
        raise RetainError(f"an action space of {n} action(s): stochastic maximisation needs at least 2")
    return list(dict.fromkeys([*rng.sample(range(n), min(n, log_n(n))), *remembered]))


def stochmax(q: torch.Tensor, cands: Sequence[int]) -> tuple[float, int]:
    """(max, argmax) of the action values `q` (n,) over the candidate actions only."""
    idx = torch.as_tensor(list(cands))
    i = int(q[idx].argmax())
    return float(q[idx[i]]), int(idx[i])


class TabularQ:
    """Q-learning on a table of S states x n actions; `stoch` uses stochmax in the target and the greedy choice."""

    def __init__(self, n_states: int, n_actions: int, gamma: float, stoch: bool):
        if n_actions < 2:
            raise RetainError(f"n_actions must be at least 2, got {n_actions}")
        self.q = torch.zeros(n_states, n_actions, dtype=torch.float64)
        self.gamma, self.stoch, self.n = gamma, stoch, n_actions
        self.best = [None] * n_states  # per state: the last stochastic argmax
        self.recent: deque[int] = deque(maxlen=max(1, log_n(n_actions) - 1))
        self.evaluated = 0  # Q values read by maximisations: the cost the method cuts

    def max(self, s: int, rng: random.Random) -> tuple[float, int]:
        """max_a Q(s, a), exactly or over the stochastic candidates (updating the state's remembered best)."""
        if not self.stoch:
            self.evaluated += self.n
            v, a = self.q[s].max(0)
            return float(v), int(a)
        remembered = [*self.recent] + ([self.best[s]] if self.best[s] is not None else [])
        cands = candidates(self.n, remembered, rng)
        self.evaluated += len(cands)
        v, a = stochmax(self.q[s], cands)
        self.best[s] = a
        return v, a

    def act(self, s: int, epsilon: float, rng: random.Random) -> int:
        """epsilon-greedy on the (stochastic) max."""
        a = rng.randrange(self.n) if rng.random() < epsilon else self.max(s, rng)[1]
        self.recent.append(a)
        return a

    def update(self, s: int, a: int, r: float, s2: int, done: bool, lr: float, rng: random.Random) -> None:
        """Q(s,a) += lr (r + gamma max Q(s', .) - Q(s,a)), the max exact or stochastic."""
        target = r + (0.0 if done else self.gamma * self.max(s2, rng)[0])
        self.q[s, a] += lr * (target - self.q[s, a])


class QNet(nn.Module):
    """Q(s, a) with the action's features as an input: an MLP 64-64-1 (as the reference), so evaluating k
    actions costs k rows, whatever n is."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(state_dim + action_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s_i, a_i): states (..., ds), actions (..., da) -> (...)."""
        x = torch.cat([states, actions], dim=-1)
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x))))).squeeze(-1)

    def grid(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of every state with every action: states (B, ds), actions (K, da) -> (B, K)."""
        b, k = states.shape[0], actions.shape[0]
        return self(states[:, None].expand(b, k, -1), actions[None].expand(b, k, -1))


class DeepQ:
    """DQN (exact max over all n actions) or StochDQN (stochmax), with a replay buffer and a target network.

    `features` (n, da) are the actions' inputs to the Q network. The networks are initialised from `seed`, and
    every later random choice goes through the `rng` passed in, so a run is a function of its seeds and
    resumes exactly (`state`, `load`).
    """

    def __init__(self, state_dim: int, features: torch.Tensor, *, stoch: bool, lr: float, gamma: float,
                 batch_size: int, buffer: int, hidden: int = 64, seed: int = 0):  # fmt: skip
        if len(features) < 2:
            raise RetainError(f"an action space of {len(features)} action(s): Q-learning needs at least 2")
        torch.manual_seed(seed)
        self.net, self.target = QNet(state_dim, features.shape[1], hidden), QNet(state_dim, features.shape[1], hidden)
        self.target.load_state_dict(self.net.state_dict())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.features, self.n, self.stoch = features.float(), len(features), stoch
        self.gamma, self.batch_size = gamma, batch_size
        self.buffer: list[tuple] = []  # a ring of `capacity` transitions; `pos` is the next to overwrite
        self.capacity, self.pos = buffer, 0
        self.evaluated = 0

    def _max(self, net: QNet, states: torch.Tensor, cands: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per state: the max of Q over the candidate actions (all of them when None) and its action."""
        acts = torch.arange(self.n) if cands is None else torch.as_tensor(cands)
        q = net.grid(states, self.features[acts])
        self.evaluated += q.numel()
        v, i = q.max(1)
        return v, acts[i]

    def _cands(self, rng: random.Random, remembered: Sequence[int] = ()) -> list[int] | None:
        return candidates(self.n, remembered, rng) if self.stoch else None

    def act(self, state: torch.Tensor, epsilon: float, rng: random.Random) -> int:
        """epsilon-greedy; greedy over all actions (DQN) or over ceil(log2 n) random ones plus a replay batch's."""
        if rng.random() < epsilon or len(self.buffer) < self.batch_size:
            return rng.randrange(self.n)
        remembered = [t[1] for t in rng.sample(self.buffer, self.batch_size)] if self.stoch else ()
        with torch.no_grad():  # StochDQN remembers the actions of a replay batch, as in its update
            return int(self._max(self.net, state[None], self._cands(rng, remembered))[1][0])

    def learn(self, transition: tuple, rng: random.Random) -> float | None:
        """Store (s, a, r, s', done) and take one TD step on a batch from the buffer; the loss, or None while
        the buffer is shorter than a batch."""
        if len(self.buffer) < self.capacity:
            self.buffer.append(transition)
        else:
            self.buffer[self.pos] = transition
            self.pos = (self.pos + 1) % self.capacity
        if len(self.buffer) < self.batch_size:
            return None
        batch = rng.sample(self.buffer, self.batch_size)
        s, a, r, s2, done = (torch.stack([torch.as_tensor(t[i], dtype=torch.float32) for t in batch]) for i in range(5))
        with torch.no_grad():
            v, _ = self._max(self.target, s2, self._cands(rng, [t[1] for t in batch]))
            y = r + self.gamma * v * (1 - done)
        q = self.net(s, self.features[a.long()])
        loss = F.mse_loss(q, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def sync(self) -> None:
        """Copy the online network into the target network."""
        self.target.load_state_dict(self.net.state_dict())

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything a resumed agent needs (networks, optimiser, replay buffer) as (tensors, JSON-able meta)."""
        o_t, o_m = pack_optimizer(self.opt)
        tensors = {**{f"net.{k}": v for k, v in self.net.state_dict().items()},
                   **{f"target.{k}": v for k, v in self.target.state_dict().items()}, **o_t}  # fmt: skip
        if self.buffer:
            tensors |= {
                "buf.s": torch.stack([b[0] for b in self.buffer]),
                "buf.s2": torch.stack([b[3] for b in self.buffer]),
            }
        meta = {"optim": o_m, "evaluated": self.evaluated, "pos": self.pos,
                "buf": [[b[1], b[2], b[4]] for b in self.buffer]}  # fmt: skip
        return tensors, meta

    def load(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of `state`."""
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.target.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("target.")})
        unpack_optimizer(self.opt, tensors, meta["optim"])
        buffered = zip(tensors.get("buf.s", []), tensors.get("buf.s2", []), meta["buf"])
        self.buffer = [(s, a, r, s2, d) for s, s2, (a, r, d) in buffered]
        self.evaluated, self.pos = meta["evaluated"], meta["pos"]


def job_name(agent: str, n: int, seed: int) -> str:
    """A job of `retain stochq`: its checkpoint folder and its result file are named so."""
    return f"{agent}-n{n}-s{seed}"


def replay_sizes(n: int, batch_size: int | None, buffer: int | None) -> tuple[int, int]:
    """The replay batch and buffer: as given, or the reference's 2 ceil(log2 n) and two batches."""
    batch = batch_size or 2 * log_n(n)
    return batch, buffer or 2 * batch


def _rng_meta(rng: random.Random) -> list:
    v, state, gauss = rng.getstate()
    return [v, list(state), gauss]


def _rng_state(meta: list) -> tuple:
    return meta[0], tuple(meta[1]), meta[2]


def resume_agent(q: DeepQ, ckdir, rng: random.Random) -> dict[str, Any]:
    """Load a job's last checkpoint into `q` and `rng`; its loop state (empty when there is none)."""
    if not (ckpt := latest_checkpoint(ckdir)):
        return {}
    tensors, meta = load_checkpoint(ckpt)
    q.load(tensors, meta["agent"])
    rng.setstate(_rng_state(meta["rng"]))
    return meta["loop"]


def save_agent(q: DeepQ, ckdir, step: int, rng: random.Random, loop: dict[str, Any]) -> None:
    """Checkpoint `q`, `rng` and the job's loop state (`loop`, JSON-able) as step `step` in `ckdir`."""
    tensors, meta = q.state()
    save_checkpoint(ckdir, step, tensors, {"agent": meta, "rng": _rng_meta(rng), "loop": loop})
