"""Diversity labels from the world: how free the next token of a biography is.

A biography states each of a person's attributes once, in random order, each with a random training
template (retain.world.render.bio). Given a prefix of one, the next token is a random variable over the
biographies that could have produced that prefix: the wording is free (which attribute comes next, which
template says it), the facts are fixed (the values are the person's). Its diversity, 1 - sum_x p(x)^2 (the
chance that two draws differ), is the label: 0 inside a value or a forced phrase, high at a sentence start.

The distribution is exact: inside a sentence every (remaining attribute, template) pair consistent with the
sentence so far is weighted 1 / (remaining attributes x its templates), as `bio` draws them.
"""

from __future__ import annotations

import random
from collections import Counter

from retain.world import templates as T
from retain.world.world import Entity

Sentence = tuple[str, int, list[int]]  # (attribute, template index, token ids)


def candidates(entity: Entity, tokenizer) -> dict[str, list[list[int]]]:
    """Per attribute, the token ids of every training-template sentence stating the entity's value."""
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    return {a: [enc(t.format(name=entity.name, value=v)) for t in T.split(T.BIO[a], False)]
            for a, v in entity.attrs.items()}  # fmt: skip


def diversity(counts: dict[int, float]) -> float:
    """1 - sum p^2 of a weighted next-token distribution."""
    total = sum(counts.values())
    return 1.0 - sum((c / total) ** 2 for c in counts.values()) if total else 0.0


def next_token_diversity(cands: dict[str, list[list[int]]], used: set[str], partial: list[int], eos_id: int) -> float:
    """Diversity of the next token after the sentences of `used` attributes and `partial` tokens of the next."""
    remaining = [a for a in cands if a not in used]
    if not remaining:
        return 0.0  # only the eos can follow
    counts: dict[int, float] = Counter()
    k = len(partial)
    for a in remaining:
        w = 1.0 / (len(remaining) * len(cands[a]))
        for seq in cands[a]:
            if seq[:k] == partial and len(seq) > k:
                counts[seq[k]] += w
    return diversity(counts) if counts else 0.0


def bio_with_labels(entity: Entity, tokenizer, rng: random.Random,
                    cands: dict[str, list[list[int]]] | None = None) -> tuple[list[int], list[float]]:  # fmt: skip
    """A biography of `entity` drawn as `render.bio` draws it, as token ids BOS ... EOS, and per position i the
    diversity of token i + 1 given tokens 0..i (the label of the hidden state at i; the last is 0)."""
    cands = cands or candidates(entity, tokenizer)
    attrs = list(entity.attrs)
    rng.shuffle(attrs)
    sentences = [(a, rng.randrange(len(cands[a]))) for a in attrs]
    ids, labels, used = [tokenizer.bos_token_id], [], set()
    for a, t in sentences:
        seq = cands[a][t]
        for k in range(len(seq)):
            labels.append(next_token_diversity(cands, used, seq[:k], tokenizer.eos_token_id))
            ids.append(seq[k])
        used.add(a)
    labels.append(next_token_diversity(cands, used, [], tokenizer.eos_token_id))  # before the eos: 0
    ids.append(tokenizer.eos_token_id)
    labels.append(0.0)  # after the eos nothing is predicted
    return ids, labels
