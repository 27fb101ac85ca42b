"""Answer questions with a model: build prompts in the tokenizer's text format (`retain.models.text`),
generate greedily with the KV cache, score.

Prompts that share their head (the same context, the same few-shot examples) encode it once: its KV cache is
computed one time and every question of the group continues it, instead of each question re-reading it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from retain.eval.exact_match import grade
from retain.models.device import autocast, device_of
from retain.models.generate import generate, kv_of, prefix_fits
from retain.models.text import text_format


def encode(tokenizer, text: str, bos: bool = True) -> list[int]:
    """Token ids of `text`, after the format's start token(s) (BOS, or the end-of-document separator)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return (list(text_format(tokenizer).start) if bos else []) + ids


def decode_answer(tokenizer, ids: list[int]) -> str:
    """The answer text: decoded, cut at a newline or at the start of a next question."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in ("\n", " Q :", " Q:"):
        text = text.split(stop)[0]
    return text.strip()


@torch.no_grad()
def answer(model: torch.nn.Module, tokenizer, prompts: Sequence[tuple[str, str] | str],
           max_new_tokens: int | None = None, batch_size: int = 64, prefix=None, bos: bool = True, route=None,
           share: bool = True) -> list[str]:  # fmt: skip
    """Greedy answers to prompts given as (head, tail) text (or whole strings), after a KV-cache `prefix` if
    given (`bos=False` when the prefix holds the start token; `route`: which prefix positions each prompt
    reads, `generate`). Without a prefix, prompts sharing a non-empty head read it once (its KV cache), unless
    `share` is off (a model whose rows are routed to different adapters needs every row in every pass)."""
    fmt = text_format(tokenizer)
    tokens = max_new_tokens or fmt.answer_tokens
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    parts = [p if isinstance(p, tuple) else ("", p) for p in prompts]
    start = list(fmt.start) if bos else []
    gen = dict(eos_id=fmt.stops, pad_id=tokenizer.pad_token_id, max_new_tokens=tokens, batch_size=batch_size)
    out: list[list[int]] = [[] for _ in parts]
    with autocast(device_of(model)):
        if prefix is not None:
            ids = [start + enc(h) + enc(t) for h, t in parts]
            out = generate(model, ids, prefix=prefix, route=route, **gen)
        else:
            groups: dict[str, list[int]] = defaultdict(list)
            for i, (h, _) in enumerate(parts):
                groups[h].append(i)
            alone: dict[int, list[int]] = {}  # prompts read whole, all in one batched generation
            for head, idx in groups.items():
                head_ids = start + enc(head)
                if share and head and len(idx) > 1 and prefix_fits(model, len(head_ids)):
                    shared = kv_of(model, head_ids)  # read once: its cache is every question's prefix
                    rows = generate(model, [enc(parts[i][1]) for i in idx], prefix=shared, **gen)
                    for i, r in zip(idx, rows):
                        out[i] = r
                else:
                    alone |= {i: head_ids + enc(parts[i][1]) for i in idx}
            for i, r in zip(alone, generate(model, list(alone.values()), **gen)):
                out[i] = r
    return [decode_answer(tokenizer, o) for o in out]


def ask(model, tokenizer, questions: Sequence, context: str | Sequence[str | None] | None = None,
        max_new_tokens: int | None = None, batch_size: int = 64, prefix=None, bos: bool = True,
        route=None, share: bool = True) -> list[str]:  # fmt: skip
    """Answers to `Question`s, closed-book or with one context for all (or one per question)."""
    fmt = text_format(tokenizer)
    contexts = context if isinstance(context, (list, tuple)) else [context] * len(questions)
    return answer(model, tokenizer, [fmt.prompt(q.text, c) for q, c in zip(questions, contexts)], max_new_tokens,
                  batch_size, prefix, bos, route, share)  # fmt: skip


def score(questions: Sequence, predictions: Sequence[str], grading: str = "world") -> dict[str, float]:
    """Accuracy overall (`acc`) and per question kind (`acc/<kind>`), with counts (`n`, `n/<kind>`), graded
    by `grading` (`retain.eval.exact_match.grade`: the world's exact match, or SQuAD's normalised one)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for q, p in zip(questions, predictions, strict=True):
        by_kind[q.kind].append(grade(p, q, grading)["em"])
    hits = [h for v in by_kind.values() for h in v]
    out: dict[str, float] = {"acc": sum(hits) / len(hits) if hits else float("nan"), "n": len(hits)}
    for kind, v in sorted(by_kind.items()):
        out[f"acc/{kind}"] = sum(v) / len(v)
        out[f"n/{kind}"] = len(v)
    return out
