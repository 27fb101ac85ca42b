"""A synthetic genome for HyenaDNA at CPU scale, its character tokenizer, and a long-range task on it.

The genome is an order-2 Markov chain over A, C, G, T (transition rows drawn from a Dirichlet) into which
repeats are copied: at a rate `repeat_rate` per position a segment of 8-32 nucleotides from up to
`repeat_distance` positions back is copied again, each letter mutated with probability `mutation`. Next-
nucleotide prediction on it rewards both the local statistics and copying from far back.

With `rule_rate` > 0 the genome also carries the motif task's rule itself (`plant_rule`): windows whose
first letters hold the motif or not, then a marker and the letter the rule gives. Pretraining then has a reason
to carry the motif's presence to a window's end, which a frozen model needs for a soft prompt to read it out.

Two tasks on sequences of `task_len` nucleotides from the same chain, labelled A or N:
- `motif`: a fixed `k`-mer (drawn once from the seed) stands at a random offset within the first 32 letters
  (A) or nowhere in the sequence (N). Its presence hundreds of letters before the label decides it.
- `repeat`: the sequence's first `k`-mer (the key, at a random offset within the first 32) comes back as its
  last `k` letters (A) or does not (N, a fresh k-mer of the same chain, so that letter statistics do not tell
  them apart). The model must carry an arbitrary key across the sequence and compare: associative recall,
  which the first run's 2-layer model did not learn (docs/log.md).

The tokenizer follows the reference (hyena-dna): [CLS] 0, [SEP] 1, [BOS] 2, [MASK] 3, [PAD] 4, [RESERVED] 5,
[UNK] 6, then A C G T N as 7-11; a labelled example is the sequence, [SEP], then the label nucleotide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain.errors import RetainError

SPECIALS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]
LETTERS = "ACGTN"
SEP, PAD = 1, 4
VOCAB = len(SPECIALS) + len(LETTERS)
LETTER_IDS = {c: len(SPECIALS) + i for i, c in enumerate(LETTERS)}
LABELS = {"A": LETTER_IDS["A"], "N": LETTER_IDS["N"]}
"""The label nucleotides of the binary task, as the reference's soft-prompt experiments use them."""


def encode(seq: str) -> list[int]:
    """Token ids of a nucleotide string (upper or lower case); a one-line error for any other character."""
    ids = []
    for i, c in enumerate(seq.upper()):
        j = LETTERS.find(c)
        if j < 0:
            raise RetainError(f"character {c!r} at position {i} is not a nucleotide; the DNA alphabet is "
                              f"{', '.join(LETTERS)}")  # fmt: skip
        ids.append(len(SPECIALS) + j)
    return ids


def decode(ids: list[int]) -> str:
    return "".join(LETTERS[i - len(SPECIALS)] if i >= len(SPECIALS) else SPECIALS[i] for i in ids)


@dataclass
class GenomeConfig:
    """The synthetic genome and the long-range task on it."""

    length: int = 400_000
    """Nucleotides in the genome."""
    repeat_rate: float = 0.01
    """Per position, the chance that a copy of an earlier segment starts there."""
    repeat_distance: int = 1000
    """How far back a copied segment may lie."""
    mutation: float = 0.02
    """Chance each copied letter is replaced by a random one."""
    rule_rate: float = 0.0
    """Share of the genome laid out as the long-range rule: windows of `task_len` letters that hold the
    task's motif in their first 32 letters or nowhere, each followed by the marker k-mer and the letter the
    rule gives (A with the motif, T without). Next-nucleotide prediction then rewards carrying the motif's
    presence to the window's end. 0: no rule (the runs before it)."""
    task_len: int = 512
    """Nucleotides per task example."""
    task: str = "motif"
    """motif (a fixed k-mer near the start decides the label) or repeat (the first k-mer comes back at the end)."""
    k: int = 8
    """Length of the task's motif or key k-mer."""
    n_train: int = 2000
    """Task examples to train the prompts and the fine-tuning on."""
    n_test: int = 500
    """Task examples the arms are scored on (drawn apart from the training ones)."""
    seed: int = 0
    """Seed of the chain, the genome and the task."""

    def __post_init__(self) -> None:
        if self.length < 1000 or not 0 <= self.repeat_rate < 0.5 or not 0 <= self.mutation <= 1:
            raise ValueError("genome: need length >= 1000, repeat_rate in [0, 0.5) and mutation in [0, 1]")
        if self.repeat_distance < 40:
            raise ValueError(
                f"genome.repeat_distance must be >= 40 (segments are up to 32 long), got {self.repeat_distance}"
            )
        if not 2 <= self.k <= 16 or self.task_len < 2 * self.k + 40:
            raise ValueError(
                f"genome: need 2 <= k <= 16 and task_len >= 2 k + 40, got k {self.k}, task_len {self.task_len}"
            )
        if not 0 <= self.rule_rate <= 0.9:
            raise ValueError(f"genome.rule_rate must be in [0, 0.9], got {self.rule_rate}")
        if self.task not in ("motif", "repeat"):
            raise ValueError(f"genome.task must be motif or repeat, got {self.task!r}")
        if self.n_train < 2 or self.n_test < 2:
            raise ValueError("genome: n_train and n_test must be at least 2")


def chain(seed: int) -> np.ndarray:
    """Order-2 transition probabilities (16 contexts x 4 letters), rows from Dirichlet(0.5)."""
    return np.random.default_rng(seed).dirichlet([0.5] * 4, size=16)


def background(n: int, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n letters (0-3) of the order-2 chain."""
    out = np.empty(n, dtype=np.int64)
    out[:2] = rng.integers(0, 4, 2)
    u = rng.random(n)
    cum = probs.cumsum(1)
    for i in range(2, n):
        out[i] = min(int(np.searchsorted(cum[out[i - 2] * 4 + out[i - 1]], u[i])), 3)
    return out


def genome(cfg: GenomeConfig) -> np.ndarray:
    """The genome as letters 0-3: the chain, with repeats copied in."""
    rng = np.random.default_rng(cfg.seed + 1)
    g = background(cfg.length, chain(cfg.seed), rng)
    i = cfg.repeat_distance
    while i < cfg.length:
        if rng.random() < cfg.repeat_rate:
            n = int(rng.integers(8, 33))
            src = i - int(rng.integers(n + 8, cfg.repeat_distance))
            seg = g[src : src + n].copy()
            flip = rng.random(len(seg)) < cfg.mutation
            seg[flip] = rng.integers(0, 4, int(flip.sum()))
            g[i : i + len(seg)] = seg[: cfg.length - i]
            i += n
        else:
            i += 1
    if cfg.rule_rate:
        plant_rule(g, cfg, rng)
    return g


def plant_rule(g: np.ndarray, cfg: GenomeConfig, rng: np.random.Generator) -> None:
    """Lay `rule_rate` of the genome out as rule windows, in place: a window of `task_len` letters with the
    motif at an offset below 32 (half of them) or nowhere, then the marker and A (motif) or T (none)."""
    m, mark, span = motif(cfg), marker(cfg), cfg.task_len + cfg.k + 1
    slots = len(g) // span
    probs = chain(cfg.seed)
    for slot in rng.choice(slots, round(cfg.rule_rate * slots), replace=False):
        at = int(slot) * span
        window = g[at : at + cfg.task_len]
        while holds(window, m):  # a chance occurrence would break the rule
            window[:] = background(cfg.task_len, probs, rng)
        present = rng.random() < 0.5
        if present:
            o = int(rng.integers(0, 32))
            window[o : o + cfg.k] = m
        g[at + cfg.task_len : at + span - 1] = mark
        g[at + span - 1] = 0 if present else 3  # A or T


def motif(cfg: GenomeConfig) -> np.ndarray:
    """The motif task's k-mer (letters 0-3), fixed by the seed."""
    return np.random.default_rng([cfg.seed, 4]).integers(0, 4, cfg.k)


def marker(cfg: GenomeConfig) -> np.ndarray:
    """The rule windows' end marker (letters 0-3), fixed by the seed and unlike the motif."""
    rng = np.random.default_rng([cfg.seed, 5])
    while True:
        mark = rng.integers(0, 4, cfg.k)
        if not np.array_equal(mark, motif(cfg)):
            return mark


def holds(row: np.ndarray, kmer: np.ndarray) -> bool:
    """Whether `kmer` occurs anywhere in `row`."""
    windows = np.lib.stride_tricks.sliding_window_view(row, len(kmer))
    return bool((windows == kmer).all(1).any())


def task(cfg: GenomeConfig, n: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`n` examples of `cfg.task`: letters (n, task_len) and labels (n,), 1 for A, 0 for N."""
    rng = np.random.default_rng([cfg.seed, {"train": 2, "test": 3}[split]])
    probs = chain(cfg.seed)
    x = np.stack([background(cfg.task_len, probs, rng) for _ in range(n)])
    y = np.arange(n) % 2
    rng.shuffle(y)
    if cfg.task == "motif":
        m = motif(cfg)
        for row, label in zip(x, y):
            while holds(row, m):  # a chance occurrence would mislabel a negative, or add a late copy
                row[:] = background(cfg.task_len, probs, rng)
            if label:
                at = int(rng.integers(0, 32))
                row[at : at + cfg.k] = m
        return x, y
    for row, label in zip(x, y):
        at = int(rng.integers(0, 32))
        key = row[at : at + cfg.k].copy()
        end = key.copy()
        # a fresh k-mer of the same chain: no shortcut by letter statistics
        while not label and np.array_equal(end, key):
            end = background(cfg.k + 2, probs, rng)[2:]
        row[-cfg.k :] = end
    return x, y


def to_ids(letters: np.ndarray) -> np.ndarray:
    """Letters 0-3 as token ids."""
    return letters + len(SPECIALS)
