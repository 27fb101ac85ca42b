"""SCoRe (Kumar et al. 2024): teach a model to correct its first answer in a second attempt, without
collapsing into repeating it. Here on the world's questions: attempt 1 answers closed-book; then a fixed
instruction, (optionally) a memory the first attempt did not see, and the question again; attempt 2 answers.

- Stage I: maximise the attempt-2 reward with a strong KL to the reference on attempt 1 only (beta2 = 10
  beta1) and the small beta1 on attempt 2: attempt 1 stays where it was while attempt 2 learns to improve on it.
- Stage II: both attempts rewarded, attempt 2's reward shaped by a bonus alpha (r2 - r1) for a change that
  fixes and a malus for one that breaks; beta1 on both.
- Naive multi-turn RL (the baseline): Stage II without the shaping and without Stage I.

On-policy REINFORCE with group-normalised advantages (G samples per question; one step per batch). Attempt 2's
tokens get attempt 2's shaped reward; attempt 1's get the episode's return r1 + r2, unshaped (attempt 1 sets
what attempt 2 sees). Crediting attempt 1 with the shaped reward instead, r1 + r2 + alpha (r2 - r1), pays it
alpha - 1 for being wrong: a first run did that and attempt 1 fell below the base (docs/log.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retain.rl.algorithms import group_advantages


def shaped_reward(r1: torch.Tensor, r2: torch.Tensor, alpha: float) -> torch.Tensor:
    """Stage II's attempt-2 reward: r2 + alpha (r2 - r1)."""
    return r2 + alpha * (r2 - r1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(policy || reference) per token by the k3 estimator exp(ref - logp) - (ref - logp) - 1, averaged over
    the real tokens of all sequences (non-negative, unbiased)."""
    diff = (ref_logp - logp) * mask
    return ((diff.exp() - diff - 1) * mask).sum() / mask.sum().clamp(min=1)


def seq_logp(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's log-probability averaged over its tokens: (N,)."""
    return (logp * mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass
class Attempts:
    """A batch of two-attempt episodes: Q questions x G samples, flattened row-major (question, sample)."""

    logp1: torch.Tensor
    """(N, C1) policy log-probs of attempt 1's tokens (with grad)."""
    ref1: torch.Tensor
    """(N, C1) the reference's."""
    mask1: torch.Tensor
    logp2: torch.Tensor
    """(N, C2) attempt 2's, given attempt 1."""
    ref2: torch.Tensor
    mask2: torch.Tensor
    r1: torch.Tensor
    """(N,) exact match of attempt 1."""
    r2: torch.Tensor
    """(N,) exact match of attempt 2."""
    group: int
    """G: samples per question (the baseline of the advantages)."""


def score_loss(a: Attempts, stage: str, alpha: float, beta1: float, beta2: float) -> tuple[torch.Tensor, dict]:
    """The loss of one on-policy step: `stage` 'I' (attempt-2 reward, beta2 KL on attempt 1 only), 'II' (both
    rewards, attempt 2 shaped by `alpha`; alpha 0 is naive multi-turn RL). Returns (loss, stats)."""
    g = a.group
    kl1, kl2 = kl_k3(a.logp1, a.ref1, a.mask1), kl_k3(a.logp2, a.ref2, a.mask2)
    lp1, lp2 = seq_logp(a.logp1, a.mask1), seq_logp(a.logp2, a.mask2)
    if stage == "I":
        adv2 = group_advantages(a.r2.view(-1, g)).flatten()
        pg = -(adv2.detach() * lp2).mean()
        loss = pg + beta2 * kl1 + beta1 * kl2
    elif stage == "II":
        adv1 = group_advantages((a.r1 + a.r2).view(-1, g)).flatten()  # the return, unshaped: see the module doc
        adv2 = group_advantages(shaped_reward(a.r1, a.r2, alpha).view(-1, g)).flatten()
        pg = -(adv1.detach() * lp1 + adv2.detach() * lp2).mean()
        loss = pg + beta1 * (kl1 + kl2)
    else:
        raise ValueError(f"stage must be 'I' or 'II', got {stage!r}")
    return loss, {"kl1": kl1.item(), "kl2": kl2.item(), "pg": pg.item()}


def self_correction(first: list[bool], second: list[bool], same: list[bool]) -> dict[str, float]:
    """The paper's metrics from per-question correctness of each attempt: Acc@t1, Acc@t2, Delta, Delta i->c
    (wrong, then right: fraction of all questions), Delta c->i (the reverse); and how often attempt 2 repeats
    attempt 1 word for word (collapse)."""
    n = max(1, len(first))
    return {"acc_t1": sum(first) / n, "acc_t2": sum(second) / n, "delta": (sum(second) - sum(first)) / n,
            "i_to_c": sum((not a) and b for a, b in zip(first, second)) / n,
            "c_to_i": sum(a and (not b) for a, b in zip(first, second)) / n, "same": sum(same) / n}  # fmt: skip
