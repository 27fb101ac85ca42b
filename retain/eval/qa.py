"""Answer questions with a model: build prompts, generate greedily with the KV cache, score exact match."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from retain.eval.exact_match import exact_match
from retain.models.generate import generate
from retain.world.render import qa_prompt


def encode(tokenizer, text: str, bos: bool = True) -> list[int]:
    """Token ids of `text`, with the tokenizer's BOS in front when it has one."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []) + ids


def decode_answer(tokenizer, ids: list[int]) -> str:
    """The answer text: decoded, cut at a newline or at the start of a next question."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in ("\n", " Q :", " Q:"):
        text = text.split(stop)[0]
    return text.strip()


def answer(model: torch.nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int = 8,
           batch_size: int = 64, prefix=None, bos: bool = True, route=None) -> list[str]:  # fmt: skip
    """Greedy answers to full prompts (context + `Q: ... A:`), after a KV-cache `prefix` if given (`bos=False`
    when the prefix holds the BOS; `route`: which prefix positions each prompt reads, `generate`)."""
    ids = [encode(tokenizer, p, bos) for p in prompts]
    out = generate(model, ids, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                   max_new_tokens=max_new_tokens, batch_size=batch_size, prefix=prefix, route=route)  # fmt: skip
    return [decode_answer(tokenizer, o) for o in out]


def ask(model, tokenizer, questions: Sequence, context: str | Sequence[str] | None = None,
        max_new_tokens: int = 8, batch_size: int = 64, prefix=None, bos: bool = True, route=None) -> list[str]:  # fmt: skip
    """Answers to `Question`s, closed-book or with one context for all (or one per question)."""
    contexts = context if isinstance(context, (list, tuple)) else [context] * len(questions)
    return answer(model, tokenizer, [qa_prompt(q.text, c) for q, c in zip(questions, contexts)], max_new_tokens,
                  batch_size, prefix, bos, route)  # fmt: skip


def score(questions: Sequence, predictions: Sequence[str]) -> dict[str, float]:
    """Accuracy overall (`acc`) and per question kind (`acc/<kind>`), with counts (`n`, `n/<kind>`)."""
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for q, p in zip(questions, predictions, strict=True):
        by_kind[q.kind].append(exact_match(p, q.answer))
    hits = [h for v in by_kind.values() for h in v]
    out: dict[str, float] = {"acc": sum(hits) / len(hits) if hits else float("nan"), "n": len(hits)}
    for kind, v in sorted(by_kind.items()):
        out[f"acc/{kind}"] = sum(v) / len(v)
        out[f"n/{kind}"] = len(v)
    return out
