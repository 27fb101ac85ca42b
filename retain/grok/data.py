"""The two datasets of "Grokked Transformers are Implicit Reasoners", as the reference (GrokkedTransformer,
`composition.ipynb`, `comparison.ipynb`) builds them. One token per entity, relation, attribute and label;
the model reads a short sequence and predicts its last token.

Composition: each entity has `facts_per_entity` distinct relations to random tails (atomic facts
(h, r) -> t), split `ood_fraction` OOD / the rest ID. A two-hop fact (h, r1, r2) -> t goes through the bridge
b = r1(h): both hops ID -> `id_test_fraction` to the ID test, the rest to the training pool; both hops OOD
-> the OOD test; one of each -> discarded. The pool is downsampled to phi x |atomic ID|. Training: every
atomic fact (OOD ones too: the OOD test asks to compose facts the model knows) and the sampled two-hop ones.

Comparison: every entity has a value (0..values-1) per attribute; per attribute the entities split
`ood_fraction` OOD / the rest ID. A query (a, e1, e2) asks <, = or >. Pairs of two ID entities: `id_test_fraction`
to the ID test, the rest downsampled to phi x |atomic ID|; pairs of two OOD entities: the OOD test. Our
choice where the reference is silent: a pair of one ID and one OOD entity is discarded, as in composition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from retain.errors import RetainError

Example = tuple[tuple[int, ...], int]
"""(input tokens, the token to predict)."""


def _check(phi: float, ood_fraction: float, id_test_fraction: float) -> None:
    if phi <= 0:
        raise ValueError(f"phi must be positive (inferred facts per atomic ID fact), got {phi}")
    if not 0 < ood_fraction < 1:
        raise ValueError(f"ood_fraction must be in (0, 1), got {ood_fraction}")
    if not 0 < id_test_fraction < 1:
        raise ValueError(f"id_test_fraction must be in (0, 1), got {id_test_fraction}")


def _downsample(pool: list, k: int, rng: random.Random, what: str) -> list:
    if k > len(pool):
        raise RetainError(f"phi asks for {k} {what} but only {len(pool)} exist; lower phi or raise "
                          "facts_per_entity (the pool is about facts_per_entity x the atomic ID facts)")  # fmt: skip
    return rng.sample(pool, k)


@dataclass
class CompositionConfig:
    """The composition dataset's sizes and splits (the reference: 2000 entities, 200 relations, 20 each)."""

    entities: int = 2000
    """Entities, one token each."""
    relations: int = 200
    """Relations, one token each."""
    facts_per_entity: int = 20
    """Distinct relations each entity has (to random tails)."""
    ood_fraction: float = 0.05
    """Atomic facts set aside as OOD (two-hop facts through two of them form the OOD test)."""
    id_test_fraction: float = 0.005
    """Two-hop facts through two ID atomic facts that go to the ID test."""
    phi: float = 7.2
    """Inferred (two-hop) training facts per atomic ID fact."""
    seed: int = 0
    """Seed of the facts and the splits."""

    def __post_init__(self) -> None:
        _check(self.phi, self.ood_fraction, self.id_test_fraction)
        if not 1 <= self.facts_per_entity <= self.relations:
            raise ValueError(
                f"facts_per_entity must be in 1..relations ({self.relations}), got {self.facts_per_entity}"
            )


@dataclass
class Dataset:
    """Token ids: entities first, then relations (or attributes and labels). `atomic_ood` and `two_hop` keep
    the facts behind the splits for the checks."""

    vocab_size: int
    train: list[Example]
    id_test: list[Example]
    ood_test: list[Example]
    atomic_id: set = field(default_factory=set)
    atomic_ood: set = field(default_factory=set)


def composition(cfg: CompositionConfig) -> Dataset:
    """Atomic facts (h, r) -> t and two-hop facts (h, r1, r2) -> t, split and downsampled as the reference."""
    rng, E = random.Random(cfg.seed), cfg.entities
    rel = lambda r: E + r  # noqa: E731  the token of relation r
    atomic = {
        (h, r): rng.randrange(E) for h in range(E) for r in rng.sample(range(cfg.relations), cfg.facts_per_entity)
    }
    keys = sorted(atomic)
    rng.shuffle(keys)
    n_ood = round(cfg.ood_fraction * len(keys))
    ood, idf = set(keys[:n_ood]), set(keys[n_ood:])
    by_head: dict[int, list[int]] = {}
    for h, r in atomic:
        by_head.setdefault(h, []).append(r)
    pool, id_test, ood_test = [], [], []
    for (h, r1), b in sorted(atomic.items()):
        for r2 in sorted(by_head.get(b, [])):
            ex = ((h, rel(r1), rel(r2)), atomic[(b, r2)])
            hops = ((h, r1) in ood, (b, r2) in ood)
            if hops == (False, False):
                (id_test if rng.random() < cfg.id_test_fraction else pool).append(ex)
            elif hops == (True, True):
                ood_test.append(ex)
    inferred = _downsample(pool, round(cfg.phi * len(idf)), rng, "two-hop training facts")
    train = [((h, rel(r)), t) for (h, r), t in sorted(atomic.items())] + inferred
    return Dataset(E + cfg.relations, train, id_test, ood_test, idf, ood)


@dataclass
class ComparisonConfig:
    """The comparison dataset's sizes and splits (the reference: 1000 entities, 20 attributes, 20 values)."""

    entities: int = 1000
    """Entities, one token each."""
    attributes: int = 20
    """Attributes, each with an ordered value per entity."""
    values: int = 20
    """Values an attribute takes (ordered)."""
    ood_fraction: float = 0.1
    """Entities per attribute set aside as OOD (pairs of two of them form the OOD test)."""
    id_test_fraction: float = 0.1
    """Pairs of two ID entities that go to the ID test."""
    phi: float = 7.2
    """Comparison training queries per atomic ID fact."""
    atomic_order: Literal["entity_first", "attribute_first"] = "entity_first"
    """Token order of an atomic fact: (e, a) -> v as the reference, or (a, e) -> v, the order in which a query
    (a, e1, e2) meets the attribute before each entity."""
    seed: int = 0
    """Seed of the values and the splits."""

    def __post_init__(self) -> None:
        _check(self.phi, self.ood_fraction, self.id_test_fraction)
        if self.atomic_order not in ("entity_first", "attribute_first"):
            raise ValueError(f"atomic_order must be entity_first or attribute_first, got {self.atomic_order!r}")


LABELS = ("<", "=", ">")


def comparison(cfg: ComparisonConfig) -> Dataset:
    """Atomic facts (e, a) -> value and queries (a, e1, e2) -> <, = or >, split per attribute."""
    rng, E, A = random.Random(cfg.seed), cfg.entities, cfg.attributes
    attr = lambda a: E + a  # noqa: E731
    value = lambda v: E + A + v  # noqa: E731
    label = lambda x, y: E + A + cfg.values + (0 if x < y else 1 if x == y else 2)  # noqa: E731
    vals = {(e, a): rng.randrange(cfg.values) for e in range(E) for a in range(A)}
    pool, id_test, ood_test, idf, ood = [], [], [], set(), set()
    for a in range(A):
        order = list(range(E))
        rng.shuffle(order)
        n_ood = round(cfg.ood_fraction * E)
        out, inside = sorted(order[:n_ood]), sorted(order[n_ood:])
        ood |= {(e, a) for e in out}
        idf |= {(e, a) for e in inside}
        for group, test in ((inside, None), (out, ood_test)):
            for e1 in group:
                for e2 in group:
                    if e1 == e2:
                        continue
                    ex = ((attr(a), e1, e2), label(vals[(e1, a)], vals[(e2, a)]))
                    if test is not None:
                        test.append(ex)
                    else:
                        (id_test if rng.random() < cfg.id_test_fraction else pool).append(ex)
    inferred = _downsample(pool, round(cfg.phi * len(idf)), rng, "comparison training queries")
    fact = (lambda e, a: (e, attr(a))) if cfg.atomic_order == "entity_first" else (lambda e, a: (attr(a), e))
    train = [(fact(e, a), value(v)) for (e, a), v in sorted(vals.items())] + inferred
    return Dataset(E + A + cfg.values + len(LABELS), train, id_test, ood_test, idf, ood)
