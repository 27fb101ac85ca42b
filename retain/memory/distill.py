"""The `distill` write: train the memory so that the model without the session behaves like the model with
the session in its context (context distillation; Cartridges' self-study, Knowledge Modules).

Teacher: the medium as it stands before the write (base plus what is already in memory), with BOS and the
session transcript in front of a query sequence. Student: the medium being written, on the query alone.
Loss: KL(teacher || student) over the query's positions on the teacher's top-k next tokens, with the rest
of each distribution as one more bucket: the teacher's remaining mass 1 - sum(top-k) against the student's
mass outside the same k tokens. That is the exact KL between the two distributions coarsened to k + 1
outcomes, so it is zero exactly when the student matches the teacher on the top k and on the rest in total.

The first token of a query is a cue and is not predicted (it is where teacher and student may see
different things before it); the loss covers the predictions of tokens 2..n. Teacher probabilities are
computed once per write and reused at every step.

Optionally (`hidden_weight` > 0) the student also matches the teacher's hidden states at chosen decoder
layers on the same positions, as Knowledge Modules' deep context distillation does: per layer the mean
absolute difference divided by the teacher's mean absolute value, averaged over the layers.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from retain.errors import RetainError
from retain.eval.exact_match import contains
from retain.memory.base import ANSWER_SPANS
from retain.memory.names import (
    answer_spans,
    cloze_question,
    focus,
    names,
    question_words,
    sentences,
    topic_names,
    unlabelled,
)
from retain.models.device import autocast, device_of
from retain.models.generate import generate
from retain.runs import distributed
from retain.train.data import right_pad


@dataclass
class Teacher:
    """One query sequence and the teacher's top-k log-probabilities for its tokens 2..n."""

    ids: list[int]
    top_idx: torch.Tensor
    """(n - 1, k) token ids."""
    top_logp: torch.Tensor
    """(n - 1, k) log-probabilities."""
    hidden: torch.Tensor | None = None
    """(layers, n - 1, d) the teacher's hidden states at the chosen layers (bf16), when they are matched."""
    head: list[int] = field(default_factory=list)
    """What the student reads before `ids` (after the start token): plain text's shots; no loss on it."""
    first: int = 1
    """The index in `ids` of the first token distilled (1: all of them; `distill_on: answer`: the answer's)."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of decoder blocks: the ModuleList with `num_hidden_layers` entries (any HF causal LM,
    under a PEFT wrapper too)."""
    n = model.config.num_hidden_layers
    for _, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) == n:
            return m
    raise RetainError(f"{type(model).__name__}: no list of {n} decoder layers found for hidden-state matching")


@contextmanager
def captured(model, layers: list[int]):
    """Inside the block the yielded dict maps each of `layers` (python indices into the decoder stack) to
    that layer's output from the last forward pass, (B, W, d) over every position the pass ran (a soft
    prompt or a BOS put in front included, so callers take the last positions). No layers: nothing hooked."""
    store: dict[int, torch.Tensor] = {}
    blocks = decoder_layers(model) if layers else []

    def hook(i):
        def keep(_module, _inputs, output):
            store[i] = output[0] if isinstance(output, tuple) else output

        return keep

    handles = [blocks[i].register_forward_hook(hook(i)) for i in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Deep context distillation's hidden-state term: per layer mean |student - teacher| over the mean
    |teacher|, averaged over layers. student, teacher (layers, N, d)."""
    t = teacher.float()
    return ((student.float() - t).abs().mean(dim=(1, 2)) / t.abs().mean(dim=(1, 2)).clamp_min(1e-6)).mean()


def topk_kl(student_logits: torch.Tensor, top_idx: torch.Tensor, top_logp: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) on the teacher's top-k tokens plus one bucket for the rest.
    student_logits (N, V); top_idx, top_logp (N, k)."""
    s_logp = F.log_softmax(student_logits.float(), dim=-1)
    s_k = s_logp.gather(-1, top_idx)
    p_t = top_logp.exp()
    rest_t = (1.0 - p_t.sum(-1)).clamp_min(0.0)
    rest_s = (1.0 - s_k.exp().sum(-1)).clamp_min(1e-12)
    kl = (p_t * (top_logp - s_k)).sum(-1)
    kl = kl + torch.where(rest_t > 0, rest_t * (torch.log(rest_t.clamp_min(1e-12)) - torch.log(rest_s)),
                          torch.zeros_like(rest_t))  # fmt: skip
    return kl.mean()


def query_ids(kind: str, memory, material, context: list[int], n: int,
              rng: random.Random) -> tuple[list[list[int]], int]:  # fmt: skip
    """`n` query sequences (token ids, no BOS) of `kind` for one session; and the forward tokens spent
    generating them (self_study continues `context`, the teacher's, through the medium)."""
    tok, fmt = memory.tokenizer, memory.fmt
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    if kind == "spans":
        parts = sentences(material.transcript)
        out = []
        for _ in range(n):
            i = rng.randrange(len(parts))
            out.append(enc(" ".join(parts[i : i + rng.choice((1, 2))])))
        return out, 0
    if kind == "oracle":
        if not material.questions:
            raise RetainError(f"session {material.session + 1}: queries 'oracle' need the session's questions")
        return [enc(fmt.qa_text(q.text, q.answer)) for q in material.questions], 0
    if not memory.bos and memory.prefix() is None:
        context = list(fmt.start) + context  # a prefix medium before its first write: nothing holds the start
    if kind in ANSWER_SPANS:  # cloze: the sentences asked back alone, nothing the model writes
        return answer_first_queries(memory, material, n if kind == "answer_first" else 0, rng)
    if fmt.style != "world":
        return plain_queries(memory, material, context, n, rng)
    seeds = [enc(fmt.seeds[i % len(fmt.seeds)]) for i in range(n)]
    cues = [[] for _ in range(n)]
    named = cue_sentences(memory, material, n)
    if named:  # re-read one sentence that names someone, then ask: each in turn
        cues = [enc(" " + c) for c in named]
        seeds = [enc(fmt.seeds[0]) for _ in range(n)]
        if memory.cfg.cue == "alone":  # the sentence without the transcript before it: one chunk, as Cartridges
            context = context[: len(fmt.start)] if context[: len(fmt.start)] == list(fmt.start) else []
    queries, spent = [[] for _ in range(n)], 0
    for turn in range(memory.cfg.query_turns):  # a conversation: after each answer the model asks again
        if turn:
            queries, seeds = [q + [fmt.end] for q in queries], [enc(fmt.seeds[0]) for _ in range(n)]
        out, more = sample(memory, [context + c + q + s for c, q, s in zip(cues, queries, seeds)], rng)
        queries, spent = [q + s + o for q, s, o in zip(queries, seeds, out)], spent + more
    return queries, spent


def cue_sentences(memory, material, n: int) -> list[str] | None:
    """The sentence each of `n` self-study queries is cued by (`cue`: every transcript sentence that names
    someone, in turn), or None when the medium does not cue (or no sentence names anyone)."""
    named = [s for s in sentences(material.transcript) if names(s)]
    if memory.cfg.cue == "none" or not named:
        return None
    return [named[i % len(named)] for i in range(n)]


def cue_contexts(memory, cues: list[str]) -> list[list[int]]:
    """`focus: cue`: per query, the teacher reads only the sentence its question was cued by (then, in plain
    text, the shots): the one chunk the question is about, as Cartridges' self-study reads one chunk."""
    tok = memory.tokenizer
    return [memory.start + tok(memory.fmt.distill_heads(c)[0], add_special_tokens=False)["input_ids"] for c in cues]


def plain_queries(memory, material, context: list[int], n: int, rng: random.Random) -> tuple[list[list[int]], int]:
    """Self-study of a pretrained model in plain text: each query is one question and its answer, in the form
    questions are asked later (`Q: <question>\nA: <answer>\n`). The question is sampled (`query_temperature`)
    after a worked example (`TextFormat.study_demo`) and the session's text (with `cue`: one sentence that
    names someone, each in turn, after the whole text or alone); the answer is the teacher's own, greedy after
    `context` (the session and the question format's head), as sequence-level distillation samples the
    teacher. Returns the queries and the forward tokens spent."""
    if memory.cfg.query_turns > 1:
        raise RetainError(f"media '{memory.cfg.name}': query_turns > 1 is for the world's model; plain-text "
                          "self-study asks one question per query")  # fmt: skip
    fmt, tok = memory.fmt, memory.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    k = len(fmt.start) if context[: len(fmt.start)] == list(fmt.start) else 0
    head = context[:k] + enc(fmt.study_demo)
    text = enc(material.transcript)
    named = cue_sentences(memory, material, n)
    if named:
        body = [] if memory.cfg.cue == "alone" else text + enc("\n\n")
        asks = [head + body + enc(c + "\n\n" + fmt.seeds[0]) for c in named]
    else:
        asks = [head + text + enc("\n\n" + fmt.seeds[0])] * n
    seed, lead, newline = enc(fmt.seeds[0]), enc(fmt.answer_lead), enc("\n")
    readers = cue_contexts(memory, named) if named and memory.cfg.focus == "cue" else [context] * n
    grounds = named or [material.transcript] * n
    kept, spent = [], 0
    for _ in range(3 if memory.cfg.grounded else 1):
        asked, more = sample(memory, asks, rng, stops=fmt.stops)  # the question, up to its newline
        said, more2 = sample(memory, [r + seed + a + lead for r, a in zip(readers, asked)], rng, stops=fmt.stops,
                             greedy=True)  # fmt: skip
        spent += more + more2
        rows = [(seed + a + lead + o + newline, g, tok.decode(o)) for a, o, g in zip(asked, said, grounds)]
        kept += [q for q, g, o in rows if not memory.cfg.grounded or contains(g, o)]
        if len(kept) >= n:
            break
    return (kept[:n] or [q for q, _, _ in rows]), spent


def answer_first_queries(memory, material, n: int, rng: random.Random) -> tuple[list[list[int]], int]:
    """Self-study with each answer picked first (`queries: answer_first`, plain and chat text). Every date,
    number and name a session's sentences state (`answer_spans`) is an answer, asked for twice:
    - the sentence asked back with the answer replaced by a question word (`cloze_question`: "Hugo Lindqvist
      has a flat in what?"), the identity-mapped cloze question of Lewis et al. 2019, so every stated fact
      has a question whatever the model can write;
    - questions the model writes after the sentence and a question word fitting the answer's type, kept
      (with `grounded`) only when the model reading that sentence answers them with that answer (round-trip
      consistency, Alberti et al. 2019) and when they do not hold it; up to three rounds.
    Queries are in the asked form (`Q: <question>\nA: <answer>\n`), distinct: every cloze question, then the
    model's up to `n` in all (`n` = 0: cloze questions alone, `queries: cloze`). No ground truth is read: the
    answers are spans of the transcript. Returns the queries and the forward tokens spent."""
    fmt, tok = memory.fmt, memory.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    topic = topic_names(material.transcript)
    spans = [(s, answer_spans(s, topic, memory.cfg.reverse)) for s in sentences(material.transcript)]
    pairs = [(s, a[r]) for r in range(max((len(a) for _, a in spans), default=0)) for s, a in spans if r < len(a)]
    if not pairs:
        raise RetainError(f"session {material.session + 1} states no date, number or name to ask about; use "
                          "queries: self_study")  # fmt: skip
    seed, lead, newline = enc(fmt.seeds[0]), enc(fmt.answer_lead), enc("\n")
    query = lambda question, a: seed + question + lead + enc(fmt.answer_text(a)) + newline  # noqa: E731
    kept = list({tuple(query(enc(" " + cloze_question(s, a)), a)): None for s, a in pairs})
    seen, spent, cloze = {tok.decode(q) for q in kept}, 0, len(kept)
    todo = [p for _ in range(-(-max(n - len(kept), 0) // len(pairs))) for p in pairs]  # every answer in turn
    heads = [list(fmt.start) + enc(unlabelled(s) + "\n\n") + seed for s, _ in todo]  # where a question is asked
    for _ in range(3 if memory.cfg.grounded else 1):
        if len(kept) >= n:
            break
        words = [enc(" " + rng.choice(question_words(a))) for _, a in todo]
        asked, more = sample(memory, [h + w for h, w in zip(heads, words)], rng, stops=fmt.stops)
        asked = [w + q for w, q in zip(words, asked)]
        said, more2 = sample(memory, [h + q + lead for h, q in zip(heads, asked)], rng, stops=fmt.stops, greedy=True)
        spent += more + more2
        for (_, a), q, o in zip(todo, asked, said):
            question, reply = tok.decode(q).strip(), tok.decode(o).strip()
            agree = contains(reply, a) or (reply and contains(a, reply))
            text = tok.decode(query(q, a))
            if not contains(question, a) and (agree or not memory.cfg.grounded) and text not in seen:
                seen.add(text)
                kept.append(query(q, a))
    return [list(q) for q in kept[: max(n, cloze)]], spent


def sample(memory, prompts: list[list[int]], rng: random.Random, stops: list[int] | None = None,
           greedy: bool = False) -> tuple[list[list[int]], int]:  # fmt: skip
    """The medium's continuations of `prompts` (at `query_temperature`, `query_tokens` at most, ending at the
    end of a text or at `stops`) and the forward tokens spent on them."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper

    tok, fmt, cfg = memory.tokenizer, memory.fmt, memory.cfg
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    warp = LogitsProcessorList([TemperatureLogitsWarper(cfg.query_temperature)]) if cfg.query_temperature != 1 else None
    out = generate(memory.model, prompts, eos_id=stops or sorted({fmt.end, tok.eos_token_id}), pad_id=tok.pad_token_id,
                   max_new_tokens=cfg.query_tokens, do_sample=not greedy, generator=gen, prefix=memory.prefix(),
                   logits_processor=warp, route=memory.route([tok.decode(p) for p in prompts])
                   ) if distributed.is_main() else None  # fmt: skip
    out = distributed.broadcast(out)  # under torchrun every rank trains on rank 0's queries
    return out, sum(len(p) + len(o) for p, o in zip(prompts, out))


def base_study(memory, texts: list[str], rng: random.Random) -> tuple[list[list[int]], int]:
    """Self-study on base knowledge: after each base text (BOS in front) the medium asks and answers itself
    (` Q:`); returns the queries (from ` Q:` on) and the forward tokens spent. Distilled closed-book, they
    hold up the model's answers to questions on what it read, which rehearsing the text alone does not
    (docs/log.md)."""
    tok = memory.tokenizer
    seed = tok(memory.fmt.seeds[0], add_special_tokens=False)["input_ids"]
    out, spent = sample(memory, [list(memory.fmt.start) + tok(t, add_special_tokens=False)["input_ids"] + seed
                                 for t in texts], rng)  # fmt: skip
    return [seed + o for o in out], spent


def general_study(memory, n: int, rng: random.Random) -> tuple[list[list[int]], int]:
    """Plain-text base study: after the shots the medium asks itself `n` general questions (sampled at
    `query_temperature`) and answers each greedily, closed-book; returns the queries in the asked form
    (`Q: ...\nA: ...\n`) and the forward tokens spent. Distilled with the shots in front, they hold up how
    the bare model answers what it knew, where the session's queries pull on the same form."""
    fmt, tok = memory.fmt, memory.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    head = list(fmt.start) + enc(fmt.distill_heads("")[1]) + enc(fmt.seeds[0])
    lead, newline = enc(fmt.answer_lead), enc("\n")
    asked, spent = sample(memory, [head] * n, rng, stops=fmt.stops)
    said, more = sample(memory, [head + a + lead for a in asked], rng, stops=fmt.stops, greedy=True)
    return [enc(fmt.seeds[0]) + a + lead + o + newline for a, o in zip(asked, said)], spent + more


def at(store: dict[int, torch.Tensor], layers: list[int], row: int, width: int, lo: int, hi: int) -> torch.Tensor:
    """(layers, hi - lo, d): positions lo..hi of a row `width` ids wide, from hooks that saw the whole pass
    (anything a medium put in front of the ids sits before them)."""
    return torch.stack([store[i][row, store[i].shape[1] - width + lo : store[i].shape[1] - width + hi]
                        for i in layers])  # fmt: skip


@torch.no_grad()
def teach(memory, context: list[int] | list[list[int]], queries: list[list[int]], k: int,
          batch_size: int = 16, temperature: float = 1.0, layers: list[int] = (),
          head: list[int] = ()) -> tuple[list[Teacher], int]:  # fmt: skip
    """The teacher's top-k on each query's tokens 2..n, with `context` (BOS and transcript) in front: one
    context for every query, or a list of one per query. Its logits are divided by `temperature` first.
    With `layers`, its hidden states there on the same positions are kept too (bf16). `head`: what the student
    will read before each query (kept with it)."""
    contexts = context if context and isinstance(context[0], list) else [context] * len(queries)
    pairs = [(c, q) for c, q in zip(contexts, queries) if len(q) >= 2]
    lead = memory.tokenizer(memory.fmt.answer_lead, add_special_tokens=False)["input_ids"]
    out, spent, layers = [], 0, list(layers)
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b : b + batch_size]
        rows = [c + q for c, q in chunk]
        ids, mask = right_pad(rows, memory.tokenizer.pad_token_id)
        with captured(memory.model, layers) as store, autocast(device_of(memory.model)):
            logits = memory.logits(ids, mask)
        spent += int(mask.sum())
        for i, (c, q) in enumerate(chunk):
            first = answer_start(q, lead) if memory.cfg.distill_on == "answer" else 1
            lo = len(c) + first - 1  # the position of q[first - 1] predicts q[first]
            logp = F.log_softmax(logits[i, lo : len(c) + len(q) - 1].float() / temperature, dim=-1)
            top = logp.topk(k, dim=-1)
            hidden = at(store, layers, i, ids.shape[1], lo, len(c) + len(q) - 1).bfloat16() if layers else None
            out.append(Teacher(q, top.indices, top.values, hidden, list(head), first))
    return out, spent


def answer_start(query: list[int], lead: list[int]) -> int:
    """The index of the first answer token in `query`: right after its last answer lead (`\\nA:`), or 1 (all
    of it) when it has none, or nothing after it."""
    for i in range(len(query) - len(lead) - 1, 0, -1):
        if query[i : i + len(lead)] == lead:
            return i + len(lead)
    return 1


def focused_contexts(memory, transcript: str, queries: list[list[int]]) -> list[list[int]]:
    """Per query, the teacher's context under `focus: entity`: BOS (unless the medium's prefix holds it)
    and the transcript's sentences that mention a name the query mentions; nothing more when none does."""
    tok = memory.tokenizer
    bos = memory.start
    out = []
    for q in queries:
        teacher, _ = memory.fmt.distill_heads(focus(transcript, tok.decode(q)))
        out.append(bos + (tok(teacher, add_special_tokens=False)["input_ids"] if teacher else []))
    return out


def student_loss(memory, batch: list[Teacher], layers: list[int] = (), weight: float = 0.0) -> torch.Tensor:
    """The medium on the queries alone (its start token and each teacher's `head` first), against the teacher:
    the top-k KL, plus `weight` x the hidden-state term at `layers` over the batch's teachers that hold hidden
    states."""
    bos = memory.start
    ids, mask = right_pad([bos + t.head + t.ids for t in batch], memory.tokenizer.pad_token_id)
    deep = [i for i, t in enumerate(batch) if t.hidden is not None] if weight > 0 else []
    layers = list(layers) if deep else []
    with captured(memory.model, layers) as store:
        logits = memory.logits(ids, mask)
    offs = [len(bos) + len(t.head) + t.first - 1 for t in batch]  # where each distilled span's predictions start
    ends = [len(bos) + len(t.head) + len(t.ids) - 1 for t in batch]
    student = torch.cat([logits[i, o:e] for i, (o, e) in enumerate(zip(offs, ends))])
    loss = topk_kl(student, torch.cat([t.top_idx for t in batch]), torch.cat([t.top_logp for t in batch]))
    if deep:
        h_s = torch.cat([at(store, layers, i, ids.shape[1], offs[i], ends[i]) for i in deep], 1)
        loss = loss + weight * hidden_loss(h_s, torch.cat([batch[i].hidden for i in deep], 1))
    return loss
