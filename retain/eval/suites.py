"""Evaluation suites of a base model on its world: closed-book, open-book, held-out templates, sessions.

Every suite is a list of (context, question) items drawn with a fixed seed, so two models (or two steps of
one run) answer the same questions.
"""

from __future__ import annotations

import random

from retain.eval.qa import ask, score
from retain.runs.seed import derive_seed
from retain.world import examples as X
from retain.world.world import World


def _subset(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)


def base_suites(world: World, seed: int = 0, n: int | None = None) -> dict[str, list[X.Item]]:
    """The named suites; `n` caps each one (a random subset) for cheap evaluation during training."""
    rng = lambda name: random.Random(derive_seed(seed, "suite", name))  # noqa: E731
    known_qa, known_bio, fresh = world.split("known_qa"), world.split("known_bio"), world.split("eval")
    suites = {
        "closed_book_qa": X.closed_book_items(known_qa, world, rng("cb_qa"), n_compare=len(known_qa) // 4),
        "closed_book_bio": X.closed_book_items(known_bio, world, rng("cb_bio"), n_compare=len(known_bio) // 4),
        "closed_book_heldout_q": X.closed_book_items(world.known, world, rng("cb_h"), heldout=True, two_hop=False),
        "open_book": X.open_book_items(fresh, world, rng("ob")),
        "heldout_template": X.open_book_items(fresh, world, rng("ob_h"), heldout=True),
        "binding": X.binding_items(world, rng("binding")),
        "session_icl": X.session_items(world.sessions),
        "session_stream": X.stream_items(world.sessions),
    }
    return {k: _subset(v, n, derive_seed(seed, "subset", k)) for k, v in suites.items()}


def run_suites(model, tokenizer, suites: dict[str, list[X.Item]], batch_size: int = 64) -> dict[str, float]:
    """Answer every suite; returns `<suite>/acc`, `<suite>/acc/<kind>` and counts."""
    out: dict[str, float] = {}
    for name, items in suites.items():
        if not items:
            continue
        contexts = [c for c, _ in items]
        questions = [q for _, q in items]
        preds = ask(model, tokenizer, questions, contexts, batch_size=batch_size)
        out.update({f"{name}/{k}": v for k, v in score(questions, preds).items()})
    return out


def by_attribute(model, tokenizer, items: list[X.Item], batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Recall accuracy of `items` per attribute asked, and the share of wrong answers that are another value
    the context states (a reader that found a value of the right type but bound it to the wrong relation,
    e.g. the home city asked for the birth city)."""
    items = [(c, q) for c, q in items if q.kind == "recall"]
    preds = ask(model, tokenizer, [q for _, q in items], [c for c, _ in items], batch_size=batch_size)
    hits: dict[str, list[float]] = {}
    misread: dict[str, list[bool]] = {}
    for (context, q), p in zip(items, preds, strict=True):
        ok = score([q], [p])["acc"]
        hits.setdefault(q.attribute, []).append(ok)
        if not ok:
            misread.setdefault(q.attribute, []).append(bool(p.strip()) and context is not None and p.strip() in context)
    return {
        a: {"acc": sum(h) / len(h), "n": len(h), "wrong_in_context": sum(misread.get(a, [])) / max(1, len(h) - sum(h))}
        for a, h in sorted(hits.items())
    }


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The summary numbers of a base model: recall accuracies closed-book, open-book, held-out templates."""

    def mean(*keys: str) -> float:
        pairs = [(metrics[f"{k}/acc/recall"], metrics[f"{k}/n/recall"]) for k in keys if f"{k}/acc/recall" in metrics]
        total = sum(n for _, n in pairs)
        return sum(a * n for a, n in pairs) / total if total else float("nan")

    return {
        "closed_book_acc": mean("closed_book_qa", "closed_book_bio"),
        "closed_book_acc_qa_split": mean("closed_book_qa"),
        "closed_book_acc_bio_split": mean("closed_book_bio"),
        "closed_book_heldout_q_acc": mean("closed_book_heldout_q"),
        "open_book_acc": mean("open_book"),
        "heldout_template_acc": mean("heldout_template"),
        "binding_acc": mean("binding"),
        "session_icl_acc": metrics.get("session_icl/acc", float("nan")),
        "session_stream_acc": metrics.get("session_stream/acc", float("nan")),
    }
