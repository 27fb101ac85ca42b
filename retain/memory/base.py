"""The memory interface every medium implements, its config, and what a write is given and costs.

A medium holds a model and some memory (nothing, a context, an adapter, a soft prompt, the weights).
`write(material)` puts one session's material into the memory; `answer(questions)` answers with whatever the
memory holds. `nbytes()` is the memory's size by `retain.fermi`'s formulas (tests check them against the
real tensors) and `params()` its trainable parameter count.
"""

from __future__ import annotations

import functools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Literal, Protocol

import torch

from retain.errors import RetainError
from retain.eval.qa import ask
from retain.fermi.arch import Arch, from_hf_config
from retain.fermi.formulas import DTYPE_BYTES
from retain.models.device import autocast, device_of, to_model
from retain.models.text import text_format
from retain.train.data import right_pad
from retain.train.optim import lr_at
from retain.world.world import Fact, Question, Session

_WEIGHTS = frozenset({"lora", "full", "soft_prompt", "kv_prefix"})
_WRITING = _WEIGHTS | {"context"}
_APPLIES: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"context"}): ("budget_tokens", "retrieve", "shots", "shot_kind"),
    _WRITING: ("focus", "source", "dtype"),
    _WEIGHTS: ("steps", "lr", "warmup", "lr_schedule", "batch_size", "augment", "replay", "base_replay", "objective",
               "queries", "n_queries", "reverse", "distill_on", "cue", "query_tokens", "query_temperature", "grounded",
               "query_turns", "base_queries", "base_study", "base_asked", "top_k", "teacher_temperature",
               "hidden_weight", "hidden_layers"),
    frozenset({"lora"}): ("rank", "alpha", "targets", "adapters", "merge", "merge_beta", "merge_density", "memory_rank",
                          "null_space"),
    frozenset({"soft_prompt", "kv_prefix"}): ("prompt_tokens",),
    frozenset({"kv_prefix"}): ("prefix_init", "blocks", "route"),
}  # fmt: skip
APPLIES: dict[str, frozenset[str]] = {key: kinds for kinds, keys in _APPLIES.items() for key in keys}
"""The medium kinds each `MediumConfig` key applies to (kind and name apply to all)."""
DISTILL_ONLY = ("queries", "n_queries", "reverse", "distill_on", "cue", "query_tokens", "query_temperature", "grounded",
                "query_turns", "base_study", "base_asked", "hidden_weight", "hidden_layers")  # fmt: skip
"""Weight-medium keys that only `objective: distill` reads (an sft medium refuses them)."""
ANSWER_SPANS = ("cloze", "answer_first")
"""Query kinds that ask back each answer a session's sentences state (plain text only)."""


@functools.cache
def _defaults(cls: type) -> dict[str, object]:
    """A dataclass's field defaults (computed once per class)."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls)}


@dataclass
class MediumConfig:
    """One memory medium of a continual run. A key set away from its default on a kind it does not apply to
    (`APPLIES`) is refused, naming the key and the kinds that read it."""

    kind: Literal["none", "context", "lora", "soft_prompt", "kv_prefix", "full"] = "lora"
    """none (the base model alone), context (material kept in the prompt), lora, soft_prompt, kv_prefix (a
    trained KV cache), full."""
    name: str = ""
    """Label in the report (default: kind). Two media of one kind need different names."""
    budget_tokens: int = 1200
    """context: most tokens of material kept in the prompt; the oldest sessions are dropped first."""
    retrieve: int = 0
    """context: show each question only the `retrieve` held sessions that share the most rare words with it
    (0: every held session). A retrieval-augmented baseline for a reader that cannot bind many people at once."""
    focus: Literal["none", "entity", "cue"] = "none"
    """context: show each question only the sentences that mention a name it mentions (entity); distill: the
    teacher sees only the transcript's sentences that mention a name the query mentions, and no transcript
    when none does (the medium alone, so queries about other people teach nothing new). Both are retrieval
    for a reader that cannot bind a value to one of two people (docs/log.md). distill with `cue`: `cue` makes
    the teacher read only the sentence each query was cued by (in plain text it also writes the answer from
    it): one chunk per question, for a reader that cannot bind a value to one of a person's attributes."""
    shots: int = 0
    """context: question-answer examples about known people between the sessions and the question."""
    shot_kind: Literal["many_shot", "reinforced", "unsupervised"] = "many_shot"
    """context: true answers (many_shot), the model's own answers kept when correct (reinforced), or the
    questions alone (unsupervised)."""
    steps: int = 60
    """Weight media: optimizer steps per write."""
    lr: float = 2e-3
    """Weight media: learning rate of the write (its peak, with `warmup` or `lr_schedule: cosine`)."""
    warmup: int = 0
    """Weight media: steps of linear lr warm-up at the start of each write. Each write starts a fresh AdamW,
    whose first steps move every trainable entry by about lr whatever its gradient (docs/real.md)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Weight media: after the warm-up the lr stays (constant) or decays along a cosine that reaches 0 one
    step after the last (as pretraining's)."""
    batch_size: int = 8
    """Weight media: sequences per write step."""
    augment: Literal["none", "shuffle", "paraphrase"] = "shuffle"
    """Weight media: each training copy of the material shuffles its sentences (shuffle), or re-renders its
    facts with random templates in random order (paraphrase: only material that carries facts, i.e. oracle)."""
    replay: float = 0.0
    """Weight media: fraction of each write batch drawn from earlier sessions' material (rehearsal)."""
    base_replay: float = 0.0
    """Weight media: fraction of each write batch drawn from base-knowledge text (biographies and QA pairs of
    known people, as in pretraining)."""
    rank: int = 8
    """lora: rank r."""
    alpha: float = 16.0
    """lora: scale numerator (the update is alpha / r x B A)."""
    targets: str = "qv"
    """lora: modules adapted: attn, qv, mlp, all-linear, or a comma list of module names."""
    adapters: Literal["single", "per_session"] = "single"
    """lora: one adapter trained on every session in turn (continued training), or a fresh adapter per
    session consolidated into the memory adapter by `merge` on the products B A, re-factored by SVD."""
    merge: Literal["average", "sum", "slerp", "ties", "ema"] = "average"
    """lora per_session: how a session adapter joins the memory of n sessions: average (weights n/(n+1),
    1/(n+1)), sum (task arithmetic), slerp (t = 1/(n+1), WARP's iterated SLERP), ties (TIES with weights
    n : 1), ema (weight merge_beta on the new session)."""
    merge_beta: float = 0.5
    """lora per_session, merge ema: weight of the newest session."""
    merge_density: float = 0.2
    """lora per_session, merge ties: fraction of entries kept per tensor when trimming."""
    memory_rank: int = 0
    """lora per_session: rank of the consolidated memory adapter (0: rank). The bytes are counted at it."""
    null_space: float = 0.0
    """lora: keep the update out of what general text feeds each adapted module (AlphaEdit's null-space
    projection, on LoRA's A): the input directions that carry this fraction of the energy of base-knowledge
    text, read once by the bare model, are projected out of A after every step, so B A leaves those inputs'
    outputs as they were. 0: off; e.g. 0.9. Needs base-knowledge text (the run passes it)."""
    prompt_tokens: int = 16
    """soft_prompt: number of trained virtual tokens; kv_prefix: number of KV positions P (at least 2: position
    0 is the frozen BOS sink, the other P - 1 are trained)."""
    prefix_init: Literal["session", "text"] = "session"
    """kv_prefix: start from the KV cache of the first P tokens of the first session written (BOS and its
    transcript), or of unrelated text (a biography of a known person)."""
    blocks: Literal["one", "per_session"] = "one"
    """kv_prefix: one prefix of P positions trained on every session in turn, or a new block of P per session
    written after the earlier sessions' blocks, which stay frozen (one shared sink): the memory grows by P - 1
    positions per session, and each block is trained beside the blocks before it (with replay, on their
    sessions' queries too), so that the blocks compose."""
    route: Literal["none", "entity"] = "none"
    """kv_prefix: which blocks a prompt reads. none: all of them. entity: the BOS sink, and each block written
    from a session that names a person the prompt names (the names each block's session mentions are kept
    beside it, and counted in its bytes); the prompt then starts right after the last block it reads. The
    same name match as the context's `focus: entity`, applied to blocks (docs/distill.md)."""
    source: Literal["writer", "transcript", "oracle"] = "writer"
    """Weight media, sft: what is written: the run's writer's material, the raw transcript, or the oracle
    notes (with their facts, for paraphrase augmentation), so one run can compare sources side by side."""
    objective: Literal["sft", "distill"] = "sft"
    """Weight media: next-token loss on the material (sft), or KL to the model with the session transcript in
    context on query sequences (distill; docs/distill.md)."""
    queries: Literal["self_study", "cloze", "answer_first", "spans", "oracle"] = "self_study"
    """distill: the query sequences: the model's own questions, answers and notes about the session
    (self_study); in plain text, each date, number and name the session states asked back as its sentence
    with a question word in its place (cloze), and with the model's own questions for those answers up to
    `n_queries` (answer_first; docs/real.md); spans of the transcript (spans); or the world's questions with
    answers (oracle: an upper bound, never the default)."""
    n_queries: int = 32
    """distill: query sequences drawn per session."""
    reverse: bool = True
    """distill, cloze and answer_first: also ask back the names of whom the session is about ("Who is an
    expert in linguistics?" for "Hugo Lindqvist is an expert in linguistics."). Off, only what is said about
    them is asked: the reverse questions teach that a general "Who ...?" is answered with a session's name
    (docs/real.md)."""
    distill_on: Literal["query", "answer"] = "query"
    """distill: the query tokens the student is taught on: all of them (query), or only those after the
    query's last answer lead (`\\nA:`; answer), so that the question is what the student reads, not what it
    learns to say, as Cartridges distils only the assistant's turns of its synthetic conversations. A query
    without a lead is taught whole."""
    cue: Literal["none", "sentence", "alone"] = "none"
    """distill, self_study: before each ` Q:` seed the medium re-reads one transcript sentence that names
    someone (each in turn), so the questions it writes cover every such sentence; the cue is not part of the
    query. `sentence` reads it after the whole transcript, `alone` reads it without the transcript (BOS and
    the sentence), so the question is about that sentence. No ground truth is used."""
    query_tokens: int = 32
    """distill, self_study: most tokens each query continues its seed for (notes of a session run to ~80)."""
    query_temperature: float = 1.0
    """distill, self_study: sampling temperature of the queries (below 1 keeps a small pretrained model's
    questions on topic; the world's model was trained to ask at 1)."""
    grounded: bool = False
    """distill, self_study in plain text: keep only queries whose answer is found, as whole words, in the text
    the question was asked about (the cue sentence, or the session), drawing up to three rounds of `n_queries`
    candidates: no ground truth, a check that the question is about what was read and the answer was read."""
    query_turns: int = 1
    """distill, self_study: questions each query asks in a row: after each answer (and its end token) the medium
    is seeded with ` Q:` again and asks on, as pretraining's question runs do (which end in two-hop
    questions); teacher and student see the whole conversation."""
    base_queries: int = 4096
    """distill with base_replay: base-knowledge texts distilled from the bare model (drawn at the first write)."""
    base_study: float = 0.0
    """distill with base_replay: the fraction of those texts the bare model studies instead of re-reading: it
    asks and answers itself after the text (` Q:`), and the question and answer are distilled closed-book,
    which holds up its answers to questions about people it knows only from biographies (docs/distill.md). In
    plain text the bare model asks itself general questions after the shots instead (no text) and answers
    them: closed-book pairs in the form every question is asked (docs/real.md)."""
    base_asked: bool = False
    """distill with base_replay on a plain model: the replayed question-answer pairs of the probe's pool are
    read as every question is asked, the shots in front (the student's head, where the session's queries
    pull), instead of as bare text; the bare model with the same head is their teacher (docs/real.md)."""
    top_k: int = 20
    """distill: the teacher's k most likely next tokens per position (the rest of its mass is one bucket)."""
    teacher_temperature: float = 1.0
    """distill: the teacher's logits are divided by it before its top-k; below 1 sharpens them, so the student
    learns the teacher's most likely token more firmly than the teacher's own spread (answers are greedy)."""
    hidden_weight: float = 0.0
    """distill: weight of hidden-state matching beside the KL (Knowledge Modules' deep context distillation):
    on the session's queries the student's hidden states at `hidden_layers` are pulled towards the teacher's,
    per layer |student - teacher| over mean |teacher|; 0 matches logits only."""
    hidden_layers: list[int] | None = None
    """distill with hidden_weight: the decoder layers whose outputs are matched (python indices, -1 the
    last); null: every layer."""
    dtype: str = "bf16"
    """Storage precision: fp32, bf16, fp16, fp8, int8 or int4 (int: absmax blocks of 32 values, one bf16 scale
    each). A weight medium trains in fp32 and at the end of every write is replaced by what it reads back as
    at this precision; its bytes count it, scales included (retain/memory/storage.py). A context medium's KV
    cache is only counted at it."""

    def __post_init__(self) -> None:
        self.name = self.name or self.kind
        defaults = _defaults(type(self))
        stray = [k for k, kinds in APPLIES.items() if self.kind not in kinds and getattr(self, k) != defaults[k]]
        if stray:
            where = "; ".join(f"{k} applies to {', '.join(sorted(APPLIES[k]))}" for k in stray)
            raise ValueError(f"media '{self.name}': {', '.join(stray)} set on a {self.kind} medium, which ignores "
                             f"{'it' if len(stray) == 1 else 'them'} ({where}); "
                             f"remove {'it' if len(stray) == 1 else 'them'} from this medium")  # fmt: skip
        unread = [k for k in DISTILL_ONLY if self.objective == "sft" and getattr(self, k) != defaults[k]]
        if unread:
            raise ValueError(f"media '{self.name}': {', '.join(unread)} set on an sft medium; only objective: distill "
                             "reads them: add objective: distill, or remove them from this medium")  # fmt: skip
        for key in ("shots", "retrieve"):
            if getattr(self, key) < 0:
                raise ValueError(f"media '{self.name}': {key} must be >= 0, got {getattr(self, key)}")
        for key in (
            "budget_tokens",
            "steps",
            "batch_size",
            "rank",
            "prompt_tokens",
            "n_queries",
            "top_k",
            "base_queries",
            "query_tokens",
            "query_turns",
            "teacher_temperature",
            "query_temperature",
        ):
            if getattr(self, key) <= 0:
                raise ValueError(f"media '{self.name}': {key} must be positive, got {getattr(self, key)}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(
                f"media '{self.name}': warmup must be in [0, steps), got {self.warmup} with steps {self.steps}"
            )
        if self.lr <= 0 or self.alpha <= 0:
            raise ValueError(f"media '{self.name}': lr and alpha must be positive, got {self.lr} and {self.alpha}")
        if not 0.0 <= self.null_space < 1.0:
            raise ValueError(
                f"media '{self.name}': null_space is a fraction of energy in [0, 1), got {self.null_space}"
            )
        if self.memory_rank < 0:
            raise ValueError(f"media '{self.name}': memory_rank must be >= 0, got {self.memory_rank}")
        if not 0.0 < self.merge_beta <= 1.0 or not 0.0 < self.merge_density <= 1.0:
            raise ValueError(f"media '{self.name}': merge_beta and merge_density must be in (0, 1]")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"media '{self.name}': dtype {self.dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
        if self.hidden_weight < 0:
            raise ValueError(f"media '{self.name}': hidden_weight must be >= 0, got {self.hidden_weight}")
        if not 0.0 <= self.base_study <= 1.0:
            raise ValueError(f"media '{self.name}': base_study must be in [0, 1], got {self.base_study}")
        if self.base_asked and not self.base_replay:
            raise ValueError(f"media '{self.name}': base_asked replays base-knowledge pairs; set base_replay > 0")
        if not 0.0 <= self.replay + self.base_replay < 1.0 or self.replay < 0 or self.base_replay < 0:
            raise ValueError(f"media '{self.name}': replay + base_replay must be in [0, 1)")
        if self.focus == "cue" and (self.cue == "none" or self.kind == "context"):
            raise ValueError(f"media '{self.name}': focus cue is the distillation teacher reading the sentence a "
                             "query was cued by; set cue: sentence or alone (or focus: entity)")  # fmt: skip
        sampled = [k for k in ("n_queries", "grounded", "query_temperature", "query_tokens")
                   if self.queries == "cloze" and getattr(self, k) != defaults[k]]  # fmt: skip
        if sampled:
            raise ValueError(f"media '{self.name}': queries cloze samples nothing from the model; remove "
                             f"{', '.join(sampled)} (or use queries: answer_first)")  # fmt: skip
        if not self.reverse and self.queries not in ANSWER_SPANS:
            raise ValueError(f"media '{self.name}': reverse: false leaves out questions that queries cloze and "
                             f"answer_first ask; queries {self.queries} asks none of them: remove reverse")  # fmt: skip
        if self.queries in ANSWER_SPANS and (self.cue != "none" or self.query_turns > 1):
            raise ValueError(f"media '{self.name}': queries {self.queries} asks one question per answer it picks "
                             "from the session's sentences: remove cue and query_turns")  # fmt: skip
        if self.route != "none" and self.kind != "kv_prefix":
            raise ValueError(f"media '{self.name}': route applies to kv_prefix blocks only; remove it for {self.kind}")
        if self.kind == "kv_prefix" and self.prompt_tokens < 2:
            raise ValueError(f"media '{self.name}': a kv_prefix needs prompt_tokens >= 2 (position 0 is the "
                             "frozen BOS sink)")  # fmt: skip

    def check_model(self, config) -> None:
        """One-line RetainError when this medium cannot run on a model with Hugging Face `config`: the
        continual loop calls it for every medium before a run starts, `make_memory` before it builds one (a
        LoRA wraps the caller's model in place)."""
        limit = getattr(config, "max_position_embeddings", None)
        if self.kind == "kv_prefix" and limit is not None and self.prompt_tokens >= limit:
            raise RetainError(f"media '{self.name}': a kv_prefix of {self.prompt_tokens} tokens does not fit the "
                              f"model's context of {limit} positions; lower prompt_tokens")  # fmt: skip
        if self.objective == "distill" and self.top_k > config.vocab_size:
            raise RetainError(f"media '{self.name}': top_k={self.top_k} exceeds the vocabulary "
                              f"({config.vocab_size}); lower top_k")  # fmt: skip
        n = config.num_hidden_layers
        bad = [i for i in self.hidden_layers or () if not -n <= i < n]
        if bad:
            raise RetainError(f"media '{self.name}': hidden_layers {bad} out of range for a model of {n} layers; "
                              f"use indices in {-n}..{n - 1}")  # fmt: skip

    def lr_at(self, step: int) -> float:
        """Weight media: the write's lr at `step` (0-based): `warmup` steps up to `lr`, then `lr_schedule`."""
        return lr_at(step, self.steps, self.lr, self.warmup, 1.0 if self.lr_schedule == "constant" else 0.0)

    def matched_layers(self, config) -> list[int]:
        """The decoder layers whose hidden states a distill write matches (none when hidden_weight is 0)."""
        if self.objective != "distill" or self.hidden_weight == 0:
            return []
        n = config.num_hidden_layers
        return sorted({i % n for i in self.hidden_layers}) if self.hidden_layers is not None else list(range(n))


class ReplaySource(Protocol):
    """Base-knowledge text for replay (`source(rng)`: one text), and what it knows of the sessions read so far:
    `settled(rng)` draws a text about someone no read session updates (safe to study: the bare model's
    answers about them cannot be stale), `stale(text)` says whether a text names someone a read session
    updates, `about(names)` is a drawer of texts about those known people (None: none is known), when the
    source is `indexed` by name, and `asked(text)` says whether a text is a question with its answer, which
    `base_asked` replays as every question is asked (the medium's head in front)."""

    indexed: bool

    def __call__(self, rng: random.Random) -> str: ...
    def settled(self, rng: random.Random) -> str: ...
    def stale(self, text: str) -> bool: ...
    def about(self, names: set[str]) -> Callable[[random.Random], str] | None: ...
    def asked(self, text: str) -> bool: ...


@dataclass
class PlainReplay:
    """A `ReplaySource` from a function `draw(rng)` that knows nothing of the sessions: every text is settled,
    none is stale, and it is not indexed by name."""

    draw: Callable[[random.Random], str]
    indexed = False

    def __call__(self, rng: random.Random) -> str:
        return self.draw(rng)

    def settled(self, rng: random.Random) -> str:
        return self.draw(rng)

    def stale(self, text: str) -> bool:
        return False

    def about(self, names: set[str]) -> None:
        return None

    def asked(self, text: str) -> bool:
        return False


def as_replay(source: ReplaySource | Callable[[random.Random], str] | None) -> ReplaySource | None:
    """`source` as a `ReplaySource` (a plain function wrapped in `PlainReplay`); one that has only some of the
    protocol's members is refused, naming the missing ones, rather than wrapped and its own behaviour lost."""
    if source is None:
        return None
    missing = [m for m in ("indexed", "settled", "stale", "about", "asked") if not hasattr(source, m)]
    if not missing:
        return source
    if len(missing) < 5:
        raise TypeError(f"{type(source).__name__} is a partial ReplaySource: it lacks {', '.join(missing)}")
    return PlainReplay(source)


@dataclass
class Material:
    """What a writer made of one session."""

    session: int
    """Index of the session in the stream."""
    text: str
    """The text to write (notes, transcript, or a model's summary)."""
    session_tokens: int
    """Tokens of the session's transcript: the denominator of bytes per session token."""
    facts: list[Fact] | None = None
    """The world's facts behind the text; only oracle material carries them (paraphrase augmentation)."""
    updates: list[Fact] | None = None
    """Which of `facts` update an earlier value (phrased as updates when paraphrased)."""
    transcript: str = ""
    """The session's transcript, whatever the writer made of it: the distillation teacher's context."""
    questions: list[Question] | None = None
    """The session's questions: only `queries: oracle` distillation reads them (an upper bound)."""
    world_session: Session | None = None
    """The world's session behind the material, for media whose `source` is not the writer."""

    def as_source(self, source: str) -> Material:
        """This session's material as `source` gives it (writer: itself; transcript; oracle notes)."""
        if source == "writer":
            return self
        if self.world_session is None:
            raise RetainError(f"source '{source}' needs the world's session; the writer did not attach it")
        s = self.world_session
        if source == "transcript":
            return Material(self.session, s.transcript, self.session_tokens, transcript=s.transcript,
                            questions=self.questions, world_session=s)  # fmt: skip
        from retain.world.render import oracle_notes

        return Material(self.session, oracle_notes(s), self.session_tokens, list(s.facts), list(s.updates),
                        s.transcript, self.questions, s)  # fmt: skip


@dataclass
class WriteCost:
    seconds: float
    tokens: int
    """Tokens through the model's forward pass during the write."""


class Memory(ABC):
    """A model plus one kind of memory."""

    bos = True
    """Texts and prompts start with BOS; False for a medium whose prefix holds it (a KV prefix)."""

    def __init__(self, model: torch.nn.Module, tokenizer, cfg: MediumConfig):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.arch: Arch = from_hf_config(model.config.to_dict())
        self.queries: list[str] = []
        """The distillation queries of the last write, decoded (the run keeps them: media/<name>.queries.json)."""

    @abstractmethod
    def write(self, material: Material) -> WriteCost:
        """Put one session's material into memory."""

    def context(self, question: Question) -> str | None:
        """The context a question is asked with (None: closed-book)."""
        return None

    def prefix(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """A KV cache every prompt continues (None: none)."""
        return None

    def route(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per prompt text, which positions of `prefix()` it reads (B, P) and the position it starts at (B,);
        None: every prompt reads the whole prefix and starts after it."""
        return None

    def answer(self, questions: list[Question], contexts: list[str | None] | None = None,
               batch_size: int = 64) -> list[str]:  # fmt: skip
        """Greedy answers to `questions` with whatever the memory holds; `contexts` replaces the medium's
        own context (to test a skill such as reading a given biography)."""
        contexts = contexts if contexts is not None else [self.context(q) for q in questions]
        prefix = self.prefix()
        route = self.route([q.text for q in questions]) if prefix else None
        return ask(self.model, self.tokenizer, questions, contexts, batch_size=batch_size, prefix=prefix,
                   bos=self.bos or prefix is None, route=route)  # fmt: skip

    @property
    def fmt(self):
        """The text format of the tokenizer (start and end tokens, prompts: retain.models.text)."""
        return text_format(self.tokenizer)

    @property
    def start(self) -> list[int]:
        """What a sequence through this medium starts with: the format's start token, or nothing when the
        medium's prefix holds it."""
        return list(self.fmt.start) if self.bos else []

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logits of right-padded `ids` through the medium (adapter, soft prompt, prefix...), on the
        model's device (the batch is moved there)."""
        return self.forward(*to_model(self.model, ids, mask))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`logits` on a batch already on the model's device; media that put something in front override it."""
        return self.model(input_ids=ids, attention_mask=mask).logits

    @torch.no_grad()
    def nll(self, texts: list[list[int]], batch_size: int = 8) -> float:
        """Mean negative log-likelihood per token of `texts` (token ids, without the start token) through the
        medium: each text's tokens 2..n are predicted; the first is read, whatever the medium puts before it."""
        start = self.start
        texts = [t for t in texts if len(t) >= 2]
        total, count = 0.0, 0
        for b in range(0, len(texts), batch_size):
            chunk = texts[b : b + batch_size]
            ids, mask = right_pad([start + t for t in chunk], self.tokenizer.pad_token_id)
            with autocast(device_of(self.model)):
                logits = self.logits(ids, mask)
            for i, t in enumerate(chunk):
                lo = len(start)  # the position of t[0], which predicts t[1]
                logp = torch.log_softmax(logits[i, lo : lo + len(t) - 1].float(), dim=-1)
                total -= float(logp.gather(-1, torch.tensor(t[1:], device=logp.device)[:, None]).sum())
                count += len(t) - 1
        return total / max(count, 1)

    @abstractmethod
    def nbytes(self) -> int:
        """Size of the memory in bytes, by the fermi formulas at `cfg.dtype`."""

    def params(self) -> int:
        """Trainable parameters of the memory (0 for the context and for none)."""
        return 0


class NoMemory(Memory):
    """The base model alone: what it answers without being told anything."""

    def write(self, material: Material) -> WriteCost:
        return WriteCost(0.0, 0)

    def nbytes(self) -> int:
        return 0


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
