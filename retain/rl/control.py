"""Environments for the value-based study (`retain stochq`): a table MDP whose optimum is known, and a continuous
control task from gymnasium with its action space discretised into n actions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retain.errors import RetainError


@dataclass
class TableMDP:
    """A deterministic MDP on a table: action a in state s moves to next[s, a] and pays reward[s, a]."""

    next: torch.Tensor
    """(S, n) next state of each state-action pair."""
    reward: torch.Tensor
    """(S, n) reward in [0, 1)."""

    @property
    def n_states(self) -> int:
        return self.next.shape[0]

    @property
    def n_actions(self) -> int:
        return self.next.shape[1]


def table_mdp(n_states: int, n_actions: int, seed: int) -> TableMDP:
    """Random transitions and uniform rewards, a function of the seed."""
    if n_states < 1 or n_actions < 2:
        raise RetainError(f"a table MDP needs >= 1 state and >= 2 actions, got {n_states} and {n_actions}")
    g = torch.Generator().manual_seed(seed)
    return TableMDP(torch.randint(n_states, (n_states, n_actions), generator=g),
                    torch.rand(n_states, n_actions, generator=g, dtype=torch.float64))  # fmt: skip


def value_iteration(mdp: TableMDP, gamma: float, tol: float = 1e-10) -> torch.Tensor:
    """Q* of the MDP (S, n), to `tol` in the max norm: the known optimum Q-learning is checked against."""
    q = torch.zeros_like(mdp.reward)
    while True:
        new = mdp.reward + gamma * q.max(1).values[mdp.next]
        if (new - q).abs().max() < tol:
            return new
        q = new


def policy_value(mdp: TableMDP, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """V of a deterministic policy (S,) exactly: solve (I - gamma P) V = r."""
    s = torch.arange(mdp.n_states)
    p = torch.zeros(mdp.n_states, mdp.n_states, dtype=torch.float64)
    p[s, mdp.next[s, policy]] = 1.0
    return torch.linalg.solve(torch.eye(mdp.n_states, dtype=torch.float64) - gamma * p, mdp.reward[s, policy])


def discretised(env_id: str, n_actions: int):
    """A gymnasium control task whose continuous (Box) action space becomes `n_actions` discrete ones (one
    dimension: n bins; d dimensions: n^(1/d) bins each), and each action's features for the Q network: its
    continuous value scaled to [-1, 1]. Returns (env, features (n, d))."""
    import gymnasium as gym
    from gymnasium.wrappers import DiscretizeAction

    try:
        env = gym.make(env_id)
    except Exception as e:  # gymnasium raises its own error types for unknown ids and missing extras
        raise RetainError(f"gymnasium cannot make '{env_id}' ({type(e).__name__}: {e}); try Pendulum-v1") from None
    box = env.action_space
    if not isinstance(box, gym.spaces.Box):
        raise RetainError(
            f"'{env_id}' has a {type(box).__name__} action space; stochq discretises a continuous (Box) one"
        )
    d = box.shape[0]
    bins = round(n_actions ** (1 / d))
    if bins**d != n_actions or bins < 2:
        raise RetainError(f"n_actions {n_actions} is not a power b^{d} (b >= 2) for the {d} action dimensions of "
                          f"'{env_id}'; pick e.g. {max(2, bins) ** d}")  # fmt: skip
    env = DiscretizeAction(env, bins=bins)
    low, high = torch.as_tensor(box.low), torch.as_tensor(box.high)
    feats = torch.stack([torch.as_tensor(env.action(i)).reshape(d) for i in range(n_actions)]).float()
    return env, (feats - low) / (high - low) * 2 - 1
