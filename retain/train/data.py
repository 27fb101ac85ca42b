"""The pretraining mixture: examples sampled from the world, tokenized with a loss mask, packed into rows.

Batch `t` is drawn from `random.Random(derive_seed(seed, "batch", t))`, so a resumed run sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from retain.runs.seed import derive_seed
from retain.world import examples as X
from retain.world.world import World


@dataclass
class MixtureConfig:
    """Weights of the pretraining tasks (normalised) and their knobs."""

    bio: float = 0.3
    """Biographies of known entities, paraphrased with shuffled attribute order (Physics of LMs 3.1)."""
    qa: float = 0.15
    """Closed-book questions about the known entities of the QA split."""
    icl_bio: float = 0.15
    """Biographies of fresh (never-seen) people in context, then questions about them."""
    icl_facts: float = 0.2
    """A few single facts of fresh people in context, then questions: a short-context warm-up for reading."""
    icl_session: float = 0.15
    """Session transcripts about fresh people in context (with updates), then questions."""
    icl_binding: float = 0.0
    """Several fresh people stated with the same attributes, then questions: only the name tells the values
    apart, which teaches the binding that reading many sessions at once needs (docs/log.md)."""
    icl_relation: float = 0.0
    """Fresh people born in one city and living in another, asked each city's question and its reverse ("What
    is <city> to <name>?"), for bases that read the two cities at chance. At 0.15 on world 2 it did not help
    (open-book 0.793, cities still at chance), nor did 300 more steps of it on that base: the relation is
    already at the city's position, the retrieval does not use it (docs/world.md)."""
    summary: float = 0.05
    """A fresh session's transcript, then the generic summary a reader would keep."""
    copy: float = 0.0
    """A random run of words repeated, for induction heads. Off by default: the reading warm-up forms the
    copying heads in-context reading needs faster (docs/log.md)."""
    context_loss: bool = False
    """Train on the in-context examples' context text too. Off: random facts of fresh people are noise that
    slowed in-context retrieval in our runs (docs/log.md)."""
    reading_warmup_steps: int = 300
    """Draw only one-fact in-context examples for the first steps: with a one-sentence context the heads
    that copy a value out of the context form in ~200 steps; with whole biographies they plateau (docs/log.md)."""
    warmup_people: int = 2
    """Most fresh people in a reading warm-up example (1: one person, so no name has to be told apart). At 1 on
    world 2 / seed 2 reading formed later and worse (open-book 0.64 against 0.77; docs/world.md)."""
    contrast_steps: int = 0
    """Steps right after the reading warm-up that draw only contrast examples (one or two fresh people, each
    born in one city and living in another, asked both): the relation-keyed retrieval formed while copying is
    the only thing training. 0: none."""
    max_facts: int = 3
    """Most facts per person in an icl_facts example (the count is geometric: half have one)."""
    contrast: float = 0.0
    """Share of icl_facts people after the reading warm-up who state both attributes of one choice set, born in
    one city and living in another, and are asked both. Meant for bases that copy a city out of a biography
    without telling the two relations apart: at 0.5 it fixed that on world 0 with training seed 2, not on
    worlds 2 and 3; in the warm-up too it slowed reading down (docs/world.md)."""
    contrast_adds: bool = False
    """State a contrast person's two cities on top of the facts drawn for them, instead of in their place: the
    contrast then takes no share of the other attributes' reading (at 0.5 in place of them, world 1 had not
    learned to copy a birth date's month by step 2,500; added, with a 16-token window on three first-layer heads,
    all four worlds read every attribute; docs/world.md)."""
    contrast_until: int = 0
    """Last step (exclusive) of the contrast; after it icl_facts is the plain one again. 0: the whole run. At
    1,500 world 1 still did not read its birth dates by step 2,500 (docs/world.md)."""
    max_context_people: int = 3
    """Most fresh biographies in one in-context example."""
    max_binding_people: int = 8
    """Most people in one icl_binding example."""
    max_context_sessions: int = 8
    """Most sessions in one in-context example (examples longer than a row are drawn again, so at 256-token
    rows only one or two sessions fit; configs/pretrain.yaml sets 2)."""
    summary_budget_words: int | None = 60
    """Length budget of the generic summaries, in words (None: keep every fact)."""

    def __post_init__(self) -> None:
        weights = self.task_weights().values()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("mixture weights must be non-negative and not all zero")
        if self.reading_warmup_steps < 0 or self.contrast_steps < 0 or self.contrast_until < 0:
            raise ValueError("mixture.reading_warmup_steps, contrast_steps and contrast_until must be >= 0")
        if self.warmup_people not in (1, 2):
            raise ValueError(f"mixture.warmup_people must be 1 or 2, got {self.warmup_people}")
        if not 0.0 <= self.contrast <= 1.0:
            raise ValueError(f"mixture.contrast must be in [0, 1], got {self.contrast}")
        if not self.contrast and (self.contrast_adds or self.contrast_until):
            raise ValueError("mixture.contrast_adds and contrast_until shape the contrast; set mixture.contrast > 0")

    def task_weights(self) -> dict[str, float]:
        """Each task's (unnormalised) weight, by task name."""
        return {"bio": self.bio, "qa": self.qa, "icl_bio": self.icl_bio, "icl_facts": self.icl_facts,
                "icl_session": self.icl_session, "icl_binding": self.icl_binding, "icl_relation": self.icl_relation,
                "summary": self.summary,
                "copy": self.copy}  # fmt: skip


def sample_example(world: World, mix: MixtureConfig, rng: random.Random, reserved: set[str],
                   step: int = 0) -> X.Segments:  # fmt: skip
    """One example of a task drawn by the mixture weights (`step` says whether the contrast is still on)."""
    tasks = mix.task_weights()
    task = rng.choices(list(tasks), weights=list(tasks.values()))[0]
    if task == "bio":
        return X.bio_example(rng.choice(world.known), rng)
    if task == "qa":
        return X.closed_qa_example(rng.choice(world.split("known_qa")), world, rng)
    if task == "copy":
        return X.copy_example(rng)
    if task == "icl_bio":
        segs = X.icl_bio_example(world, rng, reserved, mix.max_context_people)
    elif task == "icl_facts":
        contrast = mix.contrast if not mix.contrast_until or step < mix.contrast_until else 0.0
        segs = X.icl_facts_example(world, rng, reserved, mix.max_facts, contrast, contrast_adds=mix.contrast_adds)
    elif task == "icl_relation":
        segs = X.icl_relation_example(world, rng, reserved)
    elif task == "icl_binding":
        segs = X.icl_binding_example(world, rng, reserved, mix.max_binding_people)
    elif task == "icl_session":
        segs = X.icl_session_example(world, rng, reserved, mix.max_context_sessions)
    else:
        return X.summary_example(world, rng, reserved, mix.summary_budget_words)
    return [(segs[0][0], mix.context_loss)] + segs[1:]


def step_example(world: World, mix: MixtureConfig, rng: random.Random, reserved: set[str], step: int) -> X.Segments:
    """An example of step `step`'s phase: one-fact reading during the warm-up, contrast examples during
    `contrast_steps` after it, the whole mixture after that."""
    if step < mix.reading_warmup_steps:
        return X.icl_facts_example(world, rng, reserved, max_facts=1, max_people=mix.warmup_people)
    if step < mix.reading_warmup_steps + mix.contrast_steps:
        return X.icl_facts_example(world, rng, reserved, max_facts=1, contrast=1.0)
    return sample_example(world, mix, rng, reserved, step)


def tokenize(tokenizer, segments: X.Segments, bos: bool = True) -> tuple[list[int], list[bool]]:
    """Token ids and loss mask of an example; the EOS placeholder becomes the tokenizer's end token."""
    ids: list[int] = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    mask: list[bool] = [False] * len(ids)
    texts = [text for text, _ in segments if text != X.EOS]  # one tokenizer call per example, not per segment
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    for text, train in segments:
        piece = [tokenizer.eos_token_id] if text == X.EOS else next(pieces)
        ids += piece
        mask += [train] * len(piece)
    return ids, mask


def pack(examples: list[tuple[list[int], list[bool]]], rows: int, seq_len: int,
         pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Examples placed whole into `rows` rows of `seq_len` (first fit, in order), padded; labels are -100
    wherever the loss is off. Examples that do not fit are dropped, and so is one longer than a row: cut, an
    in-context example would lose its questions and train nothing.

    Returns ids, labels and position ids that restart at 0 for every example (and for the padding). Given
    position ids and no attention mask, transformers masks attention to stay inside each example, so a
    packed example sees exactly what it would see alone, as at evaluation time."""
    ids = torch.full((rows, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((rows, seq_len), -100, dtype=torch.long)
    positions = torch.zeros((rows, seq_len), dtype=torch.long)
    fill = [0] * rows
    for ex_ids, ex_mask in examples:
        n = len(ex_ids)
        row = None if n > seq_len else next((r for r in range(rows) if fill[r] + n <= seq_len), None)
        if row is None:
            continue
        s = fill[row]
        ids[row, s : s + n] = torch.tensor(ex_ids)
        labels[row, s : s + n] = torch.where(torch.tensor(ex_mask), torch.tensor(ex_ids), -100)
        positions[row, s : s + n] = torch.arange(n)
        fill[row] += n
    for row, f in enumerate(fill):
        positions[row, f:] = torch.arange(seq_len - f)
    return ids, labels, positions


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of different lengths as one right-padded batch: (ids, attention mask)."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r, dtype=torch.long), 1
    return ids, mask


def forward_packed(
    model,
    ids: torch.Tensor,
    positions: torch.Tensor,
    labels: torch.Tensor | None = None,
    n_items: torch.Tensor | None = None,
):
    """The model on a batch from `pack`: no attention mask and no cache, so transformers derives document
    masking from the restarting position ids (with a cache it silently attends across examples). With
    `n_items` the loss is the sum over predicted tokens divided by it (data parallelism); the mean otherwise."""
    extra = {"num_items_in_batch": n_items} if n_items is not None else {}
    return model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False, **extra)


def pretrain_batch(world: World, tokenizer, mix: MixtureConfig, seed: int, step: int, rows: int, seq_len: int,
                   reserved: set[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The packed batch of step `step`: examples are drawn until the rows hold ~rows x seq_len tokens.
    Examples longer than a row are drawn again (the mixture weights count the examples that fit)."""
    rng = random.Random(derive_seed(seed, "batch", step))
    examples, total, too_long = [], 0, 0
    while total < rows * seq_len * 0.97:
        ex = tokenize(tokenizer, step_example(world, mix, rng, reserved, step))
        if len(ex[0]) > seq_len:
            too_long += 1
            if too_long > 1000:
                raise ValueError(f"train.seq_len={seq_len} is shorter than almost every example; raise it")
            continue
        examples.append(ex)
        total += len(ex[0])
    return pack(examples, rows, seq_len, tokenizer.pad_token_id)
