"""The outer loop's learning rules, as small functions on tensors: group advantages (GRPO), the ReST-EM
filter, sequence log-probabilities of self-edits, and the two policy losses.

A group is the G self-edits sampled for one session; rewards come in as a (sessions, G) tensor.
"""

from __future__ import annotations

import torch

from retain.models.device import to_model
from retain.train.data import right_pad


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's normalised advantages: (r - group mean) / (group std + eps), per row of a (sessions, G)
    tensor. A group whose self-edits all score the same carries no signal: its advantages are 0."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def rest_em_keep(rewards: torch.Tensor, baseline: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
    """ReST-EM's E-step filter: keep a self-edit when its reward beats its session's baseline by more than
    `margin`. The baseline is the group mean by default, or one value per session (for example the reward of
    the policy's greedy self-edit). Returns a boolean (sessions, G) mask."""
    base = rewards.mean(dim=1, keepdim=True) if baseline is None else baseline.view(-1, 1)
    return rewards > base + margin


def rest_em_best(rewards: torch.Tensor, tiebreak: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """ReST-EM keeping one self-edit per session: the best reward, ties broken by the larger `tiebreak` (for
    example the reference policy's log-likelihood, so the most fluent of equally rewarded edits is imitated),
    kept only when it beats its group's mean by more than `margin`. Returns a boolean (sessions, G) mask."""
    top = rewards == rewards.max(dim=1, keepdim=True).values
    best = torch.where(top, tiebreak, torch.full_like(tiebreak, -torch.inf)).argmax(dim=1)
    keep = torch.zeros_like(rewards, dtype=torch.bool)
    keep[torch.arange(len(rewards)), best] = True
    return keep & rest_em_keep(rewards, margin=margin)


def completion_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Log-probability of each completion token given its prompt and the tokens before it: (N, C) log-probs
    and the (N, C) mask of real completion tokens (C = longest completion), on the model's device."""
    ids, mask = to_model(model, *right_pad([p + c for p, c in zip(prompts, completions)], pad_id))
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, L-1): log p(ids[t+1] | ids[:t+1])
    C = max(len(c) for c in completions)
    out = token_logp.new_zeros(len(prompts), C)
    cmask = token_logp.new_zeros(len(prompts), C)
    for n, (p, c) in enumerate(zip(prompts, completions)):
        out[n, : len(c)] = token_logp[n, len(p) - 1 : len(p) - 1 + len(c)]
        cmask[n, : len(c)] = 1.0
    return out, cmask


@torch.no_grad()
def mean_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> torch.Tensor:
    """Each completion's log-probability given its prompt, per token: (N,)."""
    logp, mask = completion_logprobs(model, prompts, completions, pad_id)
    return (logp * mask).sum(1) / mask.sum(1).clamp(min=1)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ReST-EM's M-step: negative log-likelihood of the kept self-edits, per token."""
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def pg_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
            kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """REINFORCE with a group baseline, on-policy (one step per batch, so the importance ratio is 1):
    -A log pi(edit), each self-edit's log-prob averaged over its tokens (GRPO), plus `kl_coef` x the KL to
    the reference policy by the k3 estimator exp(ref - logp) - (ref - logp) - 1 (non-negative, unbiased).
    Returns (loss, mean KL per token)."""
    n = mask.sum(1).clamp(min=1)
    seq_logp = (logp * mask).sum(1) / n
    diff = (ref_logp - logp) * mask
    kl = ((diff.exp() - diff - 1) * mask).sum() / mask.sum().clamp(min=1)
    return -(advantages.detach() * seq_logp).mean() + kl_coef * kl, kl.detach()
