"""WARP (Ramé et al. 2024) as reusable pieces for the RL outer loop.

One WARP iteration, from theta_init:
1. M policies are fine-tuned independently by RL with reward r - beta log(pi / pi_ema), where pi_ema is an
   exponential moving average of the policy itself (`EMAAnchor`, `anchored_reward`);
2. their task vectors are merged by SLERP (`slerp_many_dicts`, layer by layer);
3. LiTI moves from theta_init towards the merge by eta; the result is the next iteration's theta_init
   (`warp_merge` does 2 and 3). Paper defaults: M=2, mu=0.01, beta=0.1, eta=0.3.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from retain.merge import ops

Tensors = dict[str, torch.Tensor]


class EMAAnchor:
    """An exponential moving average of named parameters: mu <- (1 - mu_rate) mu + mu_rate theta per update.

    `anchor = EMAAnchor(model.named_parameters(), rate=0.01)`, then `anchor.update(model.named_parameters())`
    after each optimizer step; `anchor.state` holds the averaged tensors (fp32 copies, no gradients)."""

    def __init__(self, params: Iterable[tuple[str, torch.Tensor]], rate: float = 0.01):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"EMA rate must be in (0, 1], got {rate}")
        self.rate = rate
        self.state: Tensors = {n: p.detach().float().clone() for n, p in params}
        self.steps = 0

    @torch.no_grad()
    def update(self, params: Iterable[tuple[str, torch.Tensor]]) -> None:
        for n, p in params:
            self.state[n] = ops.ema(self.state[n], p.detach().float(), self.rate)
        self.steps += 1

    @torch.no_grad()
    def load_into(self, module: torch.nn.Module) -> None:
        """Copy the averaged tensors into `module` (a copy of the policy) to compute pi_ema."""
        named = dict(module.named_parameters())
        for n, v in self.state.items():
            named[n].copy_(v.to(named[n].dtype))


def anchored_reward(reward: torch.Tensor, logp: torch.Tensor, logp_anchor: torch.Tensor, beta: float) -> torch.Tensor:
    """WARP's KL-regularised reward r - beta (log pi(y|x) - log pi_ema(y|x)), per sequence (log-probabilities
    summed over the sampled tokens)."""
    return reward - beta * (logp - logp_anchor)


def warp_merge(init: Tensors, policies: list[Tensors], eta: float) -> Tensors:
    """Steps 2 and 3 of a WARP iteration: SLERP of the policies' task vectors from `init`, then LiTI by eta.
    Returns init + eta * slerp(delta_1..delta_M), the next iteration's initialisation."""
    return ops.apply(init, ops.slerp_many_dicts(ops.task_vectors(policies, init)), scale=eta)
