"""Training the adaptive-temperature head on the world's diversity labels (retain.sampling.labels).

- `frozen`: the language model is fixed; the head reads its hidden states through a stop-gradient, so
  only the head learns.
- `joint`: the model and the head train together on LM loss + `lam` x head loss. The head's loss reaches
  the model's hidden states, so the model can make diversity easier to read. The temperature never enters
  the LM loss: dividing logits by a learned temperature there would let the model rescale its logits to
  undo it, and the head would learn whatever lowers cross-entropy instead of the diversity label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from retain.models.device import device_of, to_model
from retain.runs.progress import progress
from retain.runs.seed import derive_seed
from retain.sampling.adaptive import TemperatureHead
from retain.sampling.labels import bio_with_labels, candidates
from retain.train.data import right_pad
from retain.world.world import Entity


@dataclass
class HeadConfig:
    """How the temperature head is trained."""

    mode: Literal["frozen", "joint"] = "frozen"
    """frozen (head only, stop-gradient on the hidden state) or joint (model and head)."""
    bios: int = 1200
    """Labelled biographies drawn for training (of the people given)."""
    steps: int = 300
    """Optimizer steps."""
    batch_size: int = 16
    """Biographies per step."""
    lr: float = 3e-3
    """Head learning rate."""
    lr_model: float = 5e-5
    """joint: model learning rate."""
    lam: float = 1.0
    """joint: weight of the head's loss against the LM loss."""
    d_hidden: int = 64
    """Head hidden width."""
    seed: int = 0


def labelled_bios(people: list[Entity], tokenizer, n: int, seed: int) -> list[tuple[list[int], list[float]]]:
    """`n` biographies of `people` (cycled) with their per-position diversity labels."""
    rng = random.Random(derive_seed(seed, "head", "bios"))
    cands = {e.name: candidates(e, tokenizer) for e in people}
    return [bio_with_labels(e, tokenizer, rng, cands[e.name]) for e in (people[i % len(people)] for i in range(n))]


def batch(rows: list[tuple[list[int], list[float]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded ids, attention mask and labels (padding masked out by the mask)."""
    ids, mask = right_pad([r for r, _ in rows], pad_id)
    y = torch.zeros(ids.shape)
    for i, (_, lab) in enumerate(rows):
        y[i, : len(lab)] = torch.tensor(lab)
    return ids, mask, y


def head_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real positions."""
    m = mask.float()
    return ((pred - y) ** 2 * m).sum() / m.sum()


def hidden(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden state after the final norm, logits) of a batch (moved to the model's device)."""
    ids, mask = to_model(model, ids, mask)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def train_head(model, tokenizer, people: list[Entity], cfg: HeadConfig) -> tuple[TemperatureHead, list[dict]]:
    """Train a head for `model` (modified in place when joint); returns it and its loss records."""
    torch.manual_seed(derive_seed(cfg.seed, "head", cfg.mode))
    head = TemperatureHead(model.config.hidden_size, cfg.d_hidden).to(device_of(model))
    rows = labelled_bios(people, tokenizer, cfg.bios, cfg.seed)
    rng = random.Random(derive_seed(cfg.seed, "head", "batches"))
    joint = cfg.mode == "joint"
    model.requires_grad_(joint)
    groups = [{"params": head.parameters(), "lr": cfg.lr}]
    if joint:
        groups.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr_model})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    model.train(joint)
    log = []
    for step in progress(range(cfg.steps), desc=f"head ({cfg.mode})", leave=False):
        ids, mask, y = to_model(model, *batch(rng.sample(rows, min(cfg.batch_size, len(rows))), tokenizer.pad_token_id))
        if joint:
            h, logits = hidden(model, ids, mask)
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            lm = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        else:
            with torch.no_grad():  # the stop-gradient: the model is not trained by the head
                h, _ = hidden(model, ids, mask)
            lm = y.new_zeros(())
        hl = head_loss(head(h), y, mask)
        loss = cfg.lam * hl + lm  # lm is 0 when frozen
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.append({"step": step, "head_loss": hl.item(), "lm_loss": lm.item()})
    model.eval().requires_grad_(False)
    return head.eval(), log


@torch.no_grad()
def head_fit(model, head: TemperatureHead, tokenizer, people: list[Entity], n: int, seed: int) -> dict[str, float]:
    """MSE of the head's scores and their correlation with the labels on `n` fresh biographies of `people`."""
    ids, mask, y = to_model(model, *batch(labelled_bios(people, tokenizer, n, seed + 1), tokenizer.pad_token_id))
    pred = head(hidden(model, ids, mask)[0])
    m = mask.bool()
    p, t = pred[m], y[m]
    corr = torch.corrcoef(torch.stack([p, t]))[0, 1]
    return {"mse": float(((p - t) ** 2).mean()), "corr": float(corr), "label_mean": float(t.mean())}
