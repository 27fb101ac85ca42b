"""Accuracy and diversity of a decoding strategy on the world's two generation tasks.

- biographies: the prompt is a known person's name after BOS (pretraining showed biographies from BOS);
  k samples per person;
- session summaries: the pretraining summary prompt `Transcript: ... Notes:` of a session; k samples each.

Each sample is read back with the templates (retain.sampling.quality): fact accuracy, unread sentences,
distinct-2 over the k samples of a prompt, and template entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retain.eval.qa import encode
from retain.sampling.adaptive import TemperatureHead
from retain.sampling.decoding import DecodingConfig, sample
from retain.sampling.quality import distinct_n, fact_accuracy, normalize, template_entropy
from retain.world.examples import summary_prompt
from retain.world.world import Entity, Session, World


@dataclass
class Task:
    """Prompts (token ids), the true facts each sample is read against, and k (samples per prompt)."""

    name: str
    prompts: list[list[int]]
    truths: list[dict[tuple[str, str], str]]
    prefixes: list[str]
    """Text of each prompt that belongs to the sample (the name that opens a biography), else ''."""
    k: int
    max_new_tokens: int


def bio_task(people: list[Entity], tokenizer, k: int, max_new_tokens: int = 96) -> Task:
    prompts, truths, prefixes = [], [], []
    for e in people:
        ids = [tokenizer.bos_token_id] + tokenizer(e.name, add_special_tokens=False)["input_ids"]
        truth = {(e.name, a): normalize(v) for a, v in e.attrs.items()}
        prompts += [ids] * k
        truths += [truth] * k
        prefixes += [e.name] * k
    return Task("biographies", prompts, truths, prefixes, k, max_new_tokens)


def summary_task(sessions: list[Session], tokenizer, k: int, max_new_tokens: int = 96) -> Task:
    prompts, truths = [], []
    for s in sessions:
        truth = {(f.entity, f.attribute): normalize(f.value) for f in s.facts}
        prompts += [encode(tokenizer, summary_prompt(s.transcript))] * k
        truths += [truth] * k
    return Task("summaries", prompts, truths, [""] * len(prompts), k, max_new_tokens)


def measure(model, tokenizer, task: Task, cfg: DecodingConfig, names: set[str], seed: int = 0,
            head: TemperatureHead | None = None) -> dict:  # fmt: skip
    """Generate `task` with decoding `cfg` (seeded) and score the samples; returns metrics and 3 examples."""
    gen = torch.Generator().manual_seed(seed)
    out = sample(model, tokenizer, task.prompts, cfg, max_new_tokens=task.max_new_tokens, generator=gen, head=head)
    texts = [(p + " " + tokenizer.decode(o, skip_special_tokens=True)).strip() for p, o in zip(task.prefixes, out)]
    acc = fact_accuracy(texts, task.truths, names)
    groups = [texts[i : i + task.k] for i in range(0, len(texts), task.k)]
    return {**acc, "distinct_2": distinct_n(groups, 2), "template_entropy": template_entropy(texts, names),
            "tokens": sum(len(o) for o in out) / len(out), "examples": texts[: 2 * task.k : task.k]}  # fmt: skip


def world_names(world: World) -> set[str]:
    return set(world.entities)
