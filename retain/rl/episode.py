"""One RL episode: the policy reads a session and writes a self-edit (its notes, sampled); the inner loop
writes it into a fresh LoRA; the reward is closed-book exact match on the session's questions (or the
adapter's log-probability of their right answers, a graded version of the same recall).

Sessions are fresh: people the base model never saw, drawn like the stream's sessions (one new person, one
update of a known fact, chatter). Training and held-out sessions draw from disjoint name pools, so held-out
recall is about entities RL never saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from retain.errors import RetainError
from retain.eval.qa import encode, score
from retain.memory.base import Material, MediumConfig
from retain.models.text import text_format
from retain.rl.lora import write_and_answer
from retain.sampling import DecodingConfig, sample
from retain.world import examples as X
from retain.world import render as R
from retain.world.world import ATTRIBUTES, Session, World

QUESTION_KEYS = (*ATTRIBUTES, "update", "two_hop")
"""What a session's questions can be restricted to: a recall attribute, the update, the two-hop question."""


def inner_default() -> MediumConfig:
    """The inner loop's medium: a rank-2 MLP LoRA, 40 steps at lr 3e-3 (one write per episode)."""
    return MediumConfig(kind="lora", name="inner", rank=2, targets="mlp", steps=40, lr=3e-3)


def taken_names(world: World) -> set[str]:
    """Names fresh sessions must not use: the world's entities and its own sessions' new people."""
    return set(world.entities) | {n for s in world.sessions for n in s.new_entities}


def fresh_sessions(world: World, n: int, rng: random.Random, reserved: set[str],
                   ask: list[str] | None = None) -> list[Session]:  # fmt: skip
    """`n` sessions about people not in `reserved` (which grows by them), with their questions: all of them,
    or only those `ask` names (recall attributes, `update`, `two_hop`)."""
    out = []
    for i in range(n):
        s, people = X.fresh_session(world, rng, reserved, i, world.config.new_per_session,
                                    world.config.updates_per_session, world.config.chatter_per_session)  # fmt: skip
        s.questions = R.session_questions(
            s, {**world.entities, **{p.name: p for p in people}}, rng, world.config.question_forms
        )
        if ask:
            s.questions = [q for q in s.questions if q.kind in ask or (q.kind == "recall" and q.attribute in ask)]
            if not s.questions:
                raise RetainError(f"ask={ask} leaves a session without questions; add a recall attribute "
                                  f"(one of {', '.join(ATTRIBUTES)})")  # fmt: skip
        out.append(s)
    return out


def prompt_ids(tokenizer, session: Session) -> list[int]:
    """What the policy reads: the start token, the transcript, then the format's cue for notes (the world's
    `Notes:`, the summary format of its pretraining)."""
    return encode(tokenizer, text_format(tokenizer).summary_prompt(session.transcript))


def write_edits(policy, tokenizer, sessions: list[Session], n: int, decoding: DecodingConfig,
                max_new_tokens: int, seed: int) -> list[list[list[int]]]:  # fmt: skip
    """`n` self-edits per session (token ids, without the eos) sampled from `policy` with `decoding`."""
    prompts = [prompt_ids(tokenizer, s) for s in sessions for _ in range(n)]
    out = sample(policy, tokenizer, prompts, decoding, max_new_tokens=max_new_tokens,
                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return [out[i * n : (i + 1) * n] for i in range(len(sessions))]


def with_eos(tokenizer, ids: list[int], max_new_tokens: int) -> list[int]:
    """A self-edit as the policy produced it: an edit that stopped on its own ends with the eos."""
    return ids + [tokenizer.eos_token_id] if len(ids) < max_new_tokens else ids


def text_of(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass
class Rewarded:
    """The outcome of writing a batch of texts: per text, its recall and its reward."""

    recall: list[float]
    """Exact match on the session's questions."""
    answer_logprob: list[float]
    """Log-probability of the right answers per answer token, averaged over the questions."""
    reward: list[float]
    tokens: int
    """Tokens through the inner loop's forward passes."""


def score_writes(reader, tokenizer, inner: MediumConfig, texts: list[str], sessions: list[Session],
                 seeds: list[int], followers: list[list[str]], lengths: list[int], token_cost: float,
                 group: int, batched: bool = True, reward: str = "exact_match",
                 grading: str = "world") -> Rewarded:  # fmt: skip
    """Write each text into a fresh adapter (init and augmentation from its seed), then write its session's
    `followers` (the long horizon: later sessions' texts), and ask its session's questions closed-book.
    Reward = recall (`exact_match`) or the answers' log-probability (`answer_logprob`) - `token_cost` x the
    text's length in tokens. `group` adapters train at once; `grading`: the world's exact match or SQuAD's
    (`retain.eval.exact_match.grade`)."""
    recall, logprob, tokens = [], [], 0
    for start in range(0, len(texts), group):
        sl = slice(start, start + group)
        mats = [[Material(s.index, t, 0)] + [Material(s.index, f, 0) for f in fs]
                for t, s, fs in zip(texts[sl], sessions[sl], followers[sl])]  # fmt: skip
        answers, lps, n = write_and_answer(reader, tokenizer, inner, mats, [s.questions for s in sessions[sl]],
                                           seeds[sl], batched=batched)  # fmt: skip
        tokens += n
        recall += [score(s.questions, ans, grading)["acc"] for s, ans in zip(sessions[sl], answers)]
        logprob += lps
    graded = {"exact_match": recall, "answer_logprob": logprob}[reward]
    return Rewarded(recall, logprob, [r - token_cost * n for r, n in zip(graded, lengths)], tokens)
