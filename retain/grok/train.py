"""`retain grok`: train the backbone long on a grokking dataset and log train / ID test / OOD test accuracy at
log-spaced steps (the delayed generalisation shows on a log axis).

    retain grok configs/grok/composition.yaml --out runs/grok-composition
    retain grok configs/grok/composition.yaml --set model.loop=2 --out runs/grok-looped   # weight-shared depth
    retain grok --out runs/grok-composition --resume

Every example is three tokens: atomic facts get a pad token in front, so one batch mixes both kinds and the
prediction is always read at the last position. AdamW with weight decay on matrices, linear warm-up, then a
constant rate (as the reference; `warmdown_steps` lets it fall to zero at the end); batches are a pure function
of seed and step, so a resumed run takes the steps an uninterrupted one takes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from retain.config import resume_config
from retain.errors import RetainError
from retain.grok.data import ComparisonConfig, CompositionConfig, Dataset, Example, comparison, composition
from retain.models.backbone import Backbone, BackboneConfig, init_weights
from retain.models.device import Precision, autocast, configure, device
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    save_checkpoint,
    unpack_model,
    unpack_optimizer,
)
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed
from retain.train.optim import adamw, lr_at, set_lr


@dataclass
class GrokModelConfig:
    """The backbone for the task (the reference: GPT-2, 8 layers of 768; a CPU run: 4 of 128)."""

    d_model: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Distinct layers (each pass runs them all)."""
    n_heads: int = 4
    """Attention heads per layer."""
    d_ff: int = 512
    """Width of the gated MLP."""
    loop: int = 1
    """Passes through the stack (2: the reference's looped variant, first and last half sharing weights)."""


@dataclass
class GrokConfig:
    """A grokking run: a dataset, a model, a long training with weight decay."""

    name: str = "grok"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    task: Literal["composition", "comparison"] = "composition"
    """Two-hop composition of atomic facts, or comparison of stored attribute values."""
    composition: CompositionConfig = field(default_factory=CompositionConfig)
    comparison: ComparisonConfig = field(default_factory=ComparisonConfig)
    model: GrokModelConfig = field(default_factory=GrokModelConfig)
    steps: int = 20000
    """Optimisation steps (grokking needs many past the point where training is fitted)."""
    batch_size: int = 512
    """Examples per step, drawn with replacement from the training set."""
    lr: float = 1e-4
    """Peak learning rate, constant after the warm-up."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices (larger groks faster, per the paper)."""
    beta2: float = 0.999
    """AdamW's second-moment decay (0.999, the reference's). A lower one follows a sudden larger gradient sooner
    after a long run of small ones, the loss spikes' mechanism in docs/grok.md."""
    warmup_steps: int = 200
    """Linear warm-up steps."""
    warmdown_steps: int = 0
    """Last steps over which the rate falls linearly to zero (0: constant to the end, as the reference). On
    comparison at phi 18 it changed little: 30,000 steps meet the target with or without (docs/grok.md)."""
    eval_points: int = 30
    """Evaluations, spaced evenly in log(step)."""
    loss_every: int = 100
    """Steps per record of the training loss (mean and max over the window) and the largest gradient norm in it:
    a loss spike between two evaluations shows here (0: none)."""
    eval_n: int = 2000
    """Examples per evaluated split (a fixed random subset when larger)."""
    ckpt_every: int = 1000
    """Steps between checkpoints (resume continues from the last)."""
    seed: int = 0
    """Seed of the data, the initialisation and the batches."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (retain/models/device.py)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    precision: Precision = "fp32"
    """fp32 (every recorded grokking number), bf16 autocast (refused where the device would emulate it) or auto
    (bf16 where the hardware computes it); parameters and AdamW state stay fp32 either way. bf16 is 1.46x faster
    on the CPU. Once fitted, a composition run at a constant rate spikes every ~2,000 steps (traced in fp32), so
    one evaluation can land in a spike (docs/grok.md)."""

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "eval_points", "eval_n", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.loss_every < 0:
            raise ValueError(f"loss_every must be >= 0 (0: no loss records), got {self.loss_every}")
        if not 0 < self.beta2 < 1:
            raise ValueError(f"beta2 must be in (0, 1), got {self.beta2}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("lr must be positive and weight_decay, warmup_steps >= 0")
        if self.warmdown_steps < 0 or self.warmdown_steps > max(0, self.steps - self.warmup_steps):
            raise ValueError(f"warmdown_steps must be in [0, steps - warmup_steps], got {self.warmdown_steps}")


def build(cfg: GrokConfig) -> Dataset:
    """The task's dataset; a one-line error when a test split comes out empty."""
    data = composition(cfg.composition) if cfg.task == "composition" else comparison(cfg.comparison)
    for name in ("id_test", "ood_test"):
        if not getattr(data, name):
            raise RetainError(f"{cfg.task}: the {name} split is empty at this size; add entities or raise "
                              f"{'id_test_fraction' if name == 'id_test' else 'ood_fraction'}")  # fmt: skip
    return data


def new_model(cfg: GrokConfig, data: Dataset) -> Backbone:
    """The backbone for the task, initialised from the run's seed: the dataset's tokens plus a pad token."""
    m = cfg.model
    bcfg = BackboneConfig(vocab_size=data.vocab_size + 1, d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads,
                          d_ff=m.d_ff, loop=m.loop, max_seq_len=3)  # fmt: skip
    return init_weights(Backbone(bcfg), seed=cfg.seed).to(device())


def tensors(examples: list[Example], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) inputs, short ones with `pad` in front, and (N,) targets."""
    return (torch.tensor([(pad,) * (3 - len(x)) + tuple(x) for x, _ in examples]),
            torch.tensor([t for _, t in examples]))  # fmt: skip


def rate(cfg: GrokConfig, step: int) -> float:
    """Linear warm-up, constant, then (with `warmdown_steps`) a linear fall to zero at the last step."""
    lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, 1.0)  # min ratio 1: constant after warm-up
    return lr * min(1.0, (cfg.steps - step) / cfg.warmdown_steps) if cfg.warmdown_steps else lr


def eval_steps(steps: int, points: int) -> set[int]:
    return {0, steps} | {round(math.exp(i * math.log(steps) / (points - 1))) for i in range(points)}


class Window:
    """Training loss (mean, max) and the largest gradient norm over the steps since the last flush, kept on the
    device so that a step does not wait for the host."""

    def __init__(self, dev: torch.device) -> None:
        self.zero = torch.zeros((), device=dev)
        self.reset()

    def reset(self) -> None:
        self.sum = self.max = self.grad_max = self.zero
        self.n = 0

    def add(self, loss: torch.Tensor, params) -> None:
        loss = loss.detach().float()
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        self.sum, self.max = self.sum + loss, torch.maximum(self.max, loss)
        self.grad_max = torch.maximum(self.grad_max, norm.float())
        self.n += 1

    def flush(self) -> dict[str, float]:
        out = {"loss_mean": (self.sum / max(1, self.n)).item(), "loss_max": self.max.item(),
               "grad_norm_max": self.grad_max.item(), "window": self.n}  # fmt: skip
        self.reset()
        return out


@torch.no_grad()
def accuracy(model: Backbone, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    hits = 0
    for i in range(0, len(x), batch):
        with autocast(device()):
            logits, _ = model(x[i : i + batch].to(device()))
        hits += int((logits[:, -1].argmax(-1).cpu() == y[i : i + batch]).sum())
    return hits / max(1, len(x))


def grok(cfg: GrokConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate; writes metrics.jsonl, checkpoints, summary.json, report.md and accuracy.png."""
    if resume:
        cfg = resume_config(cfg, out)
    configure(cfg.device, cfg.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = build(cfg)  # bad sizes fail here, before the run directory
    pad = data.vocab_size
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    model = new_model(cfg, data)
    opt = adamw(model.named_parameters(), cfg.lr, cfg.weight_decay, betas=(0.9, cfg.beta2))
    x, y = tensors(data.train, pad)
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "eval"))
    splits = {}
    for name, (sx, sy) in (("train", (x, y)), ("id_test", tensors(data.id_test, pad)),
                           ("ood_test", tensors(data.ood_test, pad))):  # fmt: skip
        i = torch.randperm(len(sx), generator=g)[: cfg.eval_n]  # a fixed subset of each split
        splits[name] = (sx[i], sy[i])
    start, elapsed = 0, 0.0
    if resume and (ckpt := latest_checkpoint(run.ckpt_dir)):
        state, meta = load_checkpoint(ckpt)
        unpack_model(model, state)
        unpack_optimizer(opt, state, meta["optim"])
        start, elapsed = meta["step"], meta["elapsed"]
        print(f"resumed {run.path} at step {start}")
    if resume:
        run.truncate_metrics(start if start else -1)  # what was logged by the checkpoint's step stays, once
    when = eval_steps(cfg.steps, cfg.eval_points)
    t0 = time.perf_counter() - elapsed
    bar = progress(total=cfg.steps, initial=start, desc=f"grok {cfg.task}")
    loss = None
    window = Window(device())
    for step in range(start, cfg.steps + 1):
        if step in when and not (start and step == start):  # a resumed run logged its checkpoint's step
            accs = {k: accuracy(model, *v) for k, v in splits.items()}
            run.log({"step": step, **accs, "loss": None if loss is None else loss.item(),
                     "seconds": time.perf_counter() - t0})  # fmt: skip
            bar.set_postfix({k: f"{v:.2f}" for k, v in accs.items()})
        if step > start and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            o_t, o_m = pack_optimizer(opt)
            save_checkpoint(run.ckpt_dir, step, {**{f"model.{k}": v for k, v in model.state_dict().items()}, **o_t},
                            {"optim": o_m, "step": step, "elapsed": time.perf_counter() - t0})  # fmt: skip
        if step == cfg.steps:
            break
        set_lr(opt, rate(cfg, step))
        i = torch.randint(
            len(x), (cfg.batch_size,), generator=torch.Generator().manual_seed(derive_seed(cfg.seed, step))
        )
        with autocast(device()):
            logits, _ = model(x[i].to(device()))
        loss = F.cross_entropy(logits[:, -1].float(), y[i].to(device()))
        loss.backward()
        if cfg.loss_every:
            window.add(loss, model.parameters())
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.update(1)
        if cfg.loss_every and (step + 1) % cfg.loss_every == 0:
            run.log({"step": step + 1, **window.flush()})
    bar.close()
    summary = summarize(run, cfg, data, time.perf_counter() - t0)
    run.write_summary(summary)
    from retain.grok.report import write_report

    write_report(run, cfg, summary)
    return summary


def summarize(run: RunDir, cfg: GrokConfig, data: Dataset, seconds: float) -> dict[str, Any]:
    records = [r for r in run.metrics() if "train" in r]
    if not records:
        raise RetainError(f"{run.path} logged no evaluation")
    first = lambda key, level: next((r["step"] for r in records if r[key] >= level), None)  # noqa: E731
    last = records[-1]
    return {"task": cfg.task, "loop": cfg.model.loop, "steps": cfg.steps, "seconds": round(seconds, 1),
            "train": last["train"], "id_test": last["id_test"], "ood_test": last["ood_test"],
            "train_99_at": first("train", 0.99), "id_90_at": first("id_test", 0.9), "ood_90_at": first("ood_test", 0.9),
            "sizes": {"train": len(data.train), "id_test": len(data.id_test),
                      "ood_test": len(data.ood_test)}}  # fmt: skip


def main(cfg: GrokConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain grok`."""
    s = grok(cfg, out, resume)
    print(f"{s['task']} (loop {s['loop']}), {s['steps']} steps in {s['seconds']:.0f}s: train {s['train']:.3f}, "
          f"ID test {s['id_test']:.3f}, OOD test {s['ood_test']:.3f}; train >= 0.99 at step "
          f"{s['train_99_at'] or 'never'}, ID >= 0.9 at {s['id_90_at'] or 'never'}")  # fmt: skip
