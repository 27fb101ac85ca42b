"""`retain dna`: HyenaDNA at CPU scale. A Hyena backbone (character tokens, no attention) is pretrained on the
synthetic genome by next-nucleotide prediction with sequence-length warm-up, then put to the long-range
repeat task two ways: fine-tuned whole, and frozen behind soft prompts of several lengths (only the prompt's
embeddings train, next-token loss on the label nucleotide after [SEP], as HyenaDNA's section 4.3).

    retain dna configs/dna/hyenadna.yaml --out runs/dna
    retain dna --out runs/dna --resume          # pretraining resumes at its last stage; finished arms are read back

Sequence-length warm-up: the paper's (section 3.2) doubling of the length at each stage with a constant batch
of sequences, not the repository example's halving of the batch (the two disagree; docs/dna.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from retain.config import resume_config
from retain.dna.genome import LETTER_IDS, SEP, VOCAB, GenomeConfig, genome, marker, task, to_ids
from retain.errors import RetainError
from retain.models.backbone import Backbone, BackboneConfig, init_weights
from retain.models.device import configure, device
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    save_checkpoint,
    unpack_model,
    unpack_optimizer,
)
from retain.runs.files import atomic_write_json
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed
from retain.train.optim import adamw, lr_at, set_lr


@dataclass
class DNAModelConfig:
    """The Hyena backbone (the reference's smallest, tiny-1k: 2 layers of 128, order 2)."""

    d_model: int = 128
    """Width of the residual stream."""
    n_layers: int = 2
    """Hyena blocks."""
    d_ff: int = 512
    """Width of the gated MLP."""
    order: int = 2
    """Hyena order: N gates and N - 1 implicit long filters."""


@dataclass
class DNAConfig:
    """Pretraining on the genome, then fine-tuning and soft prompts on the long-range task."""

    name: str = "dna"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    genome: GenomeConfig = field(default_factory=GenomeConfig)
    model: DNAModelConfig = field(default_factory=DNAModelConfig)
    lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    """Sequence-length warm-up: the pretraining lengths, one stage each, in order ([L]: no warm-up)."""
    stage_steps: int = 200
    """Pretraining steps per stage."""
    batch_size: int = 16
    """Sequences per pretraining step, the same at every length."""
    lr: float = 6e-4
    """Peak pretraining lr: 1% linear warm-up, cosine to 0.1 x (the reference)."""
    weight_decay: float = 0.1
    """On matrices, not on the Hyena filters (the reference)."""
    finetune_steps: int = 300
    """Steps of fine-tuning the whole model on the task."""
    finetune_lr: float = 1e-4
    """Its lr (AdamW, constant)."""
    prompt_tokens: list[int] = field(default_factory=lambda: [2, 8, 32])
    """Soft prompt lengths tried on the frozen model."""
    prompt_steps: int = 300
    """Steps of training each soft prompt."""
    prompt_lr: float = 1e-3
    """Its lr (AdamW, constant; the paper's)."""
    prompt_position: Literal["prefix", "suffix"] = "prefix"
    """Where the soft prompt stands: before the sequence (HyenaDNA's), or after its [SEP], next to the label
    (P-tuning's freedom of place). A prefix reaches the label only through the long filters' decay."""
    labels: Literal["AN", "AT"] = "AN"
    """The label nucleotides of the motif and the no-motif case: A and N (the reference; N never occurs in the
    genome), or A and T, the letters `genome.rule_rate`'s rule windows end with."""
    task_batch: int = 16
    """Examples per fine-tuning or prompt step."""
    seed: int = 0
    """Seed of the initialisation, the batches and the prompts."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (retain/models/device.py)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        if not self.lengths or any(b <= a for a, b in zip(self.lengths, self.lengths[1:])) or self.lengths[0] < 8:
            raise ValueError(f"lengths must rise from at least 8, got {self.lengths}")
        if any(p < 1 for p in self.prompt_tokens):
            raise ValueError(f"prompt_tokens must be positive, got {self.prompt_tokens}")
        for key in ("stage_steps", "batch_size", "finetune_steps", "prompt_steps", "task_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if min(self.lr, self.finetune_lr, self.prompt_lr) <= 0 or self.weight_decay < 0:
            raise ValueError("lr, finetune_lr and prompt_lr must be positive and weight_decay >= 0")
        if self.prompt_position not in ("prefix", "suffix"):
            raise ValueError(f"prompt_position must be prefix or suffix, got {self.prompt_position!r}")
        if self.labels not in ("AN", "AT"):
            raise ValueError(f"labels must be AN or AT, got {self.labels!r}")
        if self.model.order < 2:
            raise ValueError(f"model.order must be >= 2 (N gates, N - 1 long filters), got {self.model.order}")

    @property
    def l_max(self) -> int:
        """The filters' trained length: the longest pretraining window, prompt + example + [SEP], or (with a
        rule) example + marker."""
        rule = self.genome.task_len + self.genome.k if self.genome.rule_rate else 0
        return max(self.lengths[-1], max(self.prompt_tokens, default=0) + self.genome.task_len + 1, rule)


def build(cfg: DNAConfig) -> Backbone:
    m = cfg.model
    bcfg = BackboneConfig(vocab_size=VOCAB, d_model=m.d_model, n_layers=m.n_layers, n_heads=1, d_ff=m.d_ff,
                          mixer="hyena", hyena_order=m.order, max_seq_len=cfg.l_max)  # fmt: skip
    return init_weights(Backbone(bcfg), seed=cfg.seed).to(device())


def windows(g: torch.Tensor, L: int, n: int, seed: int) -> torch.Tensor:
    """n random windows of L + 1 token ids (input and next-token target), a pure function of `seed`."""
    starts = torch.randint(0, len(g) - L - 1, (n,), generator=torch.Generator().manual_seed(seed))
    return torch.stack([g[s : s + L + 1] for s in starts.tolist()])


def pretrain(cfg: DNAConfig, run: RunDir, model: Backbone) -> list[dict[str, Any]]:
    """Next-nucleotide pretraining, one stage per length; a checkpoint after each stage, from which a resumed
    run goes on. Returns each stage's last mean loss and seconds."""
    opt = adamw(((n, p) for n, p in model.named_parameters() if ".filter." not in n), cfg.lr, cfg.weight_decay)
    opt.add_param_group({"params": [p for n, p in model.named_parameters() if ".filter." in n], "weight_decay": 0.0})
    total = cfg.stage_steps * len(cfg.lengths)
    stages, start = [], 0
    if ckpt := latest_checkpoint(run.ckpt_dir):
        state, meta = load_checkpoint(ckpt)
        unpack_model(model, state)
        unpack_optimizer(opt, state, meta["optim"])
        stages, start = meta["stages"], len(meta["stages"])
        print(f"resumed {run.path} after stage {start} (length {cfg.lengths[start - 1]})")
    g = torch.from_numpy(to_ids(genome(cfg.genome))) if start < len(cfg.lengths) else None  # only to train on
    model.train()
    for s in range(start, len(cfg.lengths)):
        L, t0, losses = cfg.lengths[s], time.perf_counter(), []
        bar = progress(total=cfg.stage_steps, desc=f"pretrain length {L}")
        for i in range(cfg.stage_steps):
            step = s * cfg.stage_steps + i
            set_lr(opt, lr_at(step, total, cfg.lr, max(1, total // 100), 0.1))
            batch = windows(g, L, cfg.batch_size, derive_seed(cfg.seed, "pretrain", step)).to(device())
            logits, _ = model(batch[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
        bar.close()
        stages.append({"length": L, "loss": sum(losses[-20:]) / len(losses[-20:]), "seconds": time.perf_counter() - t0})
        run.log({"stage": s, **stages[-1]})
        o_t, o_m = pack_optimizer(opt)
        save_checkpoint(run.ckpt_dir, s + 1, {**{f"model.{k}": v for k, v in model.state_dict().items()}, **o_t},
                        {"optim": o_m, "stages": stages})  # fmt: skip
    model.eval()
    return stages


def label_ids(cfg: DNAConfig) -> tuple[int, int]:
    """Token ids of the labels: (motif, no motif)."""
    return LETTER_IDS["A"], LETTER_IDS[cfg.labels[1]]


def examples(cfg: DNAConfig, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's inputs ([X, SEP] ids) and label token ids."""
    x, y = task(cfg.genome, n, split)
    ids = torch.cat([torch.from_numpy(to_ids(x)), torch.full((n, 1), SEP)], 1)
    yes, no = label_ids(cfg)
    return ids, torch.tensor([yes if v else no for v in y])


def label_logits(model: Backbone, ids: torch.Tensor, prompt: torch.Tensor | None = None,
                 suffix: bool = False) -> torch.Tensor:  # fmt: skip
    """Next-token logits at the last position: after [SEP], or after the soft prompt's embeddings, which stand
    in front of the sequence or (`suffix`) after its [SEP]."""
    x = model.model.embed_tokens(ids)
    if prompt is not None:
        p = prompt.expand(len(ids), -1, -1)
        x = torch.cat([x, p] if suffix else [p, x], 1)
    h, _ = model.model(x)
    return model.lm_head(h[:, -1])


@torch.no_grad()
def accuracy(cfg: DNAConfig, model: Backbone, ids: torch.Tensor, labels: torch.Tensor,
             prompt: torch.Tensor | None = None) -> float:  # fmt: skip
    """Share of examples whose label is the likelier of the two at the last position."""
    pair = torch.tensor(label_ids(cfg))
    hits = 0
    for i in range(0, len(ids), 64):
        logits = label_logits(model, ids[i : i + 64].to(device()), prompt, cfg.prompt_position == "suffix")
        hits += int((pair[logits[:, pair.to(device())].argmax(-1).cpu()] == labels[i : i + 64]).sum())
    return hits / len(ids)


@torch.no_grad()
def rule_accuracy(cfg: DNAConfig, model: Backbone) -> float | None:
    """How well the pretrained model reads the genome's rule itself (`genome.rule_rate`): on the task's test
    sequences followed by the marker, the share whose likelier next letter of A and T is the rule's. None
    without a rule."""
    if not cfg.genome.rule_rate:
        return None
    x, y = task(cfg.genome, cfg.genome.n_test, "test")
    ids = torch.from_numpy(to_ids(np.concatenate([x, np.tile(marker(cfg.genome), (len(x), 1))], 1)))
    pair = torch.tensor([LETTER_IDS["T"], LETTER_IDS["A"]])
    hits = 0
    for i in range(0, len(ids), 64):
        logits, _ = model(ids[i : i + 64].to(device()))
        hits += int((logits[:, -1, pair.to(device())].argmax(-1).cpu() == torch.from_numpy(y[i : i + 64])).sum())
    return hits / len(ids)


@torch.no_grad()
def prompt_reach(cfg: DNAConfig, model: Backbone, draws: int = 4) -> dict[str, float]:
    """What a soft prompt has to move and how far one can: on test examples, the frozen model's label margin
    (logit of the motif's label minus the other's after [SEP]) with and without the motif, and the mean change
    of that margin under random prompts of the longest length tried, at the letters' embedding scale, in the
    run's prompt position."""
    ids, labels = examples(cfg, "test", min(cfg.genome.n_test, 256))
    ids = ids.to(device())
    a, n = label_ids(cfg)

    def margin(prompt: torch.Tensor | None = None) -> torch.Tensor:
        logits = label_logits(model, ids, prompt, cfg.prompt_position == "suffix")
        return logits[:, a] - logits[:, n]

    base, g = margin(), torch.Generator().manual_seed(derive_seed(cfg.seed, "reach"))
    letters = model.model.embed_tokens.weight[list(LETTER_IDS.values())]
    shape = (1, max(cfg.prompt_tokens), letters.shape[1])
    moved = [
        (margin(torch.randn(shape, generator=g).to(device()) * letters.std()) - base).abs().mean().item()
        for _ in range(draws)
    ]
    motif = labels.to(device()) == a
    return {"margin_motif": base[motif].mean().item(), "margin_none": base[~motif].mean().item(),
            "prompt_moves": sum(moved) / draws}  # fmt: skip


def fit(cfg: DNAConfig, model: Backbone, train: tuple[torch.Tensor, torch.Tensor], params: list[torch.nn.Parameter],
        steps: int, lr: float, desc: str, prompt: torch.Tensor | None = None) -> float:  # fmt: skip
    """`steps` AdamW steps of next-token loss on the label after [SEP] of the `train` examples; returns the
    seconds taken."""
    ids, labels = train
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    t0 = time.perf_counter()
    model.train()
    for step in progress(range(steps), desc=desc):
        i = torch.randint(
            len(ids), (cfg.task_batch,), generator=torch.Generator().manual_seed(derive_seed(cfg.seed, desc, step))
        )
        logits = label_logits(model, ids[i].to(device()), prompt, cfg.prompt_position == "suffix")
        loss = F.cross_entropy(logits, labels[i].to(device()))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - t0


def arms(cfg: DNAConfig, run: RunDir, model: Backbone) -> dict[str, dict[str, Any]]:
    """The frozen model alone, fine-tuning, and each soft prompt length, on the task's test split; each arm's
    result is kept in arms.json as it finishes, and read back on resume."""
    path = run / "arms.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    train, test = examples(cfg, "train", cfg.genome.n_train), examples(cfg, "test", cfg.genome.n_test)
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    if "frozen" not in done:
        done["frozen"] = {"accuracy": accuracy(cfg, model, *test), "seconds": 0.0, "trained": 0}
    for p in cfg.prompt_tokens:
        name = f"prompt-{p}"
        if name in done:
            continue
        model.requires_grad_(False)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, name))
        letters = torch.randint(7, VOCAB, (p,), generator=g).to(device())
        init = model.model.embed_tokens.weight[letters]  # the prompt starts as letters' embeddings
        prompt = torch.nn.Parameter(init.detach().clone()[None])
        seconds = fit(cfg, model, train, [prompt], cfg.prompt_steps, cfg.prompt_lr, name, prompt)
        done[name] = {
            "accuracy": accuracy(cfg, model, *test, prompt.detach()),
            "seconds": seconds,
            "trained": prompt.numel(),
        }
        atomic_write_json(path, done)
    if "finetune" not in done:
        model.requires_grad_(True)
        params = list(model.parameters())
        seconds = fit(cfg, model, train, params, cfg.finetune_steps, cfg.finetune_lr, "finetune")
        done["finetune"] = {
            "accuracy": accuracy(cfg, model, *test),
            "seconds": seconds,
            "trained": sum(p.numel() for p in params),
        }
        model.load_state_dict(pretrained)
        atomic_write_json(path, done)
    return done


def dna(cfg: DNAConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Pretrain, then every arm; writes summary.json, report.md and the plots."""
    if resume:
        cfg = resume_config(cfg, out)
    configure(cfg.device, "fp32")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.lengths[-1] + 1 > cfg.genome.length // 4:
        raise RetainError(f"lengths up to {cfg.lengths[-1]} need a genome of at least {4 * (cfg.lengths[-1] + 1)}; "
                          "raise genome.length")  # fmt: skip
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    model = build(cfg)
    stages = pretrain(cfg, run, model)
    results = arms(cfg, run, model)
    best = results["finetune"]["accuracy"]
    summary = {"stages": stages, "arms": results, "params": sum(p.numel() for p in model.parameters()),
               "l_max": cfg.l_max, "rule_read": rule_accuracy(cfg, model), "reach": prompt_reach(cfg, model),
               "prompt_vs_finetune": {k: v["accuracy"] / best if best else None
                                      for k, v in results.items() if k.startswith("prompt-")}}  # fmt: skip
    run.write_summary(summary)
    from retain.dna.report import write_report

    write_report(run, cfg, summary)
    return summary


def main(cfg: DNAConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain dna`."""
    s = dna(cfg, out, resume)
    for name, a in s["arms"].items():
        print(f"  {name:12s} accuracy {a['accuracy']:.3f}  ({a['trained']:,} trained values, {a['seconds']:.0f}s)")
