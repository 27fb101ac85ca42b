"""`retain pretrain`: train the base model on its world until it knows the known entities closed-book and
reads new ones in context.

    retain pretrain --config configs/pretrain.yaml --out runs/base
    retain pretrain --out runs/base --resume          # continue after an interruption
    torchrun --nproc_per_node 2 -m retain pretrain configs/pretrain.yaml --out runs/base   # data parallel

The loop, top to bottom: eval -> checkpoint -> batch -> forward/backward -> clip -> step -> log. Batches
are a pure function of (seed, step) and the checkpoint holds model, optimizer and RNG states, so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from retain.config import OPERATIONAL, flat, from_dict, read_yaml, resume_config, shown, to_dict
from retain.errors import RetainError
from retain.eval.suites import base_suites, headline, run_suites
from retain.models.build import build_model, load_model_and_tokenizer, load_tokenizer, param_count
from retain.models.config import ModelConfig
from retain.models.device import autocast, configure, device, device_of, to_model, uses_bf16
from retain.runs import distributed
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    pack_rng,
    save_checkpoint,
    unpack_model,
    unpack_optimizer,
    unpack_rng,
)
from retain.runs.progress import progress
from retain.runs.rundir import RunDir
from retain.runs.seed import seed_everything
from retain.train.data import MixtureConfig, forward_packed, pretrain_batch
from retain.train.optim import lr_at, make_optimizer, set_lr
from retain.world.io import build_tokenizer, load_world, save_world
from retain.world.world import World, WorldConfig, build_world


@dataclass
class TrainConfig:
    """Optimisation of the pretraining loop."""

    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 16
    """Rows per step; each row packs whole examples up to seq_len tokens."""
    seq_len: int = 256
    """Tokens per row."""
    optimizer: Literal["adamw", "muon"] = "adamw"
    """adamw, or muon: Muon on the hidden matrices and AdamW on embeddings and norms (docs/log.md compares)."""
    lr: float = 3e-3
    """Peak learning rate (small models memorise faster with a high one)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine decay)."""
    warmup_steps: int = 50
    """Linear warmup steps."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this."""
    bf16: bool = True
    """bfloat16 autocast where the device has bf16 hardware (GPUs, CPUs with AVX-512 or AMX); fp32 on other
    CPUs, where emulated bf16 is ~14x slower. Floats, and so results, differ between the two paths."""
    threads: int | None = None
    """torch CPU threads (None: torch's default, the number of cores)."""
    log_every: int = 25
    """Steps between metrics.jsonl records of the training loss."""
    eval_every: int = 250
    """Steps between quick evaluations (a subset of each suite)."""
    ckpt_every: int = 250
    """Steps between resumable checkpoints."""

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "seq_len", "log_every", "eval_every", "ckpt_every", "lr", "grad_clip"):
            if getattr(self, key) <= 0:
                raise ValueError(f"train.{key} must be positive, got {getattr(self, key)}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("train.warmup_steps and train.weight_decay must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"train.threads must be positive (or null), got {self.threads}")


@dataclass
class PretrainEvalConfig:
    """What is evaluated during and after pretraining."""

    during_n: int = 96
    """Questions per suite in the quick evaluations during training."""
    final_n: int | None = None
    """Questions per suite in the final evaluation (None: all)."""
    batch_size: int = 64
    """Prompts per generation batch."""

    def __post_init__(self) -> None:
        if self.during_n < 1 or self.batch_size < 1 or (self.final_n is not None and self.final_n < 1):
            raise ValueError("eval.during_n, eval.final_n and eval.batch_size must be positive")


@dataclass
class PretrainConfig:
    """`retain pretrain`: world, model, data mixture, optimisation and evaluation."""

    name: str = "pretrain"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    seed: int = 0
    """Seed of the model init and of every batch."""
    data_seed: int | None = None
    """Seed of the batches alone (None: `seed`), to tell a lottery of the initialisation from one of the data
    order (docs/world.md)."""
    device: str = "auto"
    """auto (the first CUDA GPU if any, else the CPU), cpu, cuda or cuda:N (retain/models/device.py)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: PretrainEvalConfig = field(default_factory=PretrainEvalConfig)


def _prepare_run(cfg: PretrainConfig, out: str | None, resume: bool) -> tuple[PretrainConfig, RunDir]:
    """Checks that fail before the run dir exists, then the run dir (its path from rank 0 under torchrun;
    rank 0 alone writes its config)."""
    configure(cfg.device, "auto" if cfg.train.bf16 else "fp32")  # no such device: fails before the run dir
    distributed.check_divides(cfg.train.batch_size, "train.batch_size")
    distributed.init(device())
    if resume:
        saved = resume_config(cfg, out)
        configure(saved.device, "auto" if saved.train.bf16 else "fp32")
        distributed.check_divides(saved.train.batch_size, "train.batch_size")
        return saved, RunDir(out)
    if out is None:
        out = distributed.broadcast(str(RunDir.create(cfg.name).path) if distributed.is_main() else None)
    run = RunDir.create(cfg.name, out)
    if latest_checkpoint(run.ckpt_dir) or run.summary():
        raise RetainError(f"{run.path} already holds a run; continue it with --resume or choose another --out")
    if distributed.is_main():
        run.write_config(cfg)
    return cfg, run


def _load_world_and_tokenizer(cfg: PretrainConfig, run: RunDir, model_tok: Any | None) -> tuple[World, Any]:
    """The world and tokenizer saved in the run dir, or built and saved there on first start."""
    world_dir = run / "world"
    if (world_dir / "config.yaml").exists():
        world = load_world(world_dir)
        tok = model_tok or load_tokenizer(world_dir / "tokenizer")
        return world, tok
    world = build_world(cfg.world)
    tok = model_tok or build_tokenizer(world)
    save_world(world, world_dir, tok)
    return world, tok


def pretrain(cfg: PretrainConfig, out: str | None = None, resume: bool = False,
             on_step: Callable[[int], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Pretrain (or resume), evaluate, and write the run directory; returns the summary.

    Args:
        cfg: the full config.
        out: run directory (default runs/<name>-<timestamp>/).
        resume: continue from the newest checkpoint in `out`.
        on_step: called after every optimizer step with the step number (tests use it to interrupt).
    """
    cfg, run = _prepare_run(cfg, out, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    t_cfg = cfg.train

    model_tok = None
    if cfg.model.path:
        model, model_tok = load_model_and_tokenizer(cfg.model.path)
    if distributed.is_main():  # rank 0 builds and saves the world; the other ranks read it back
        world, tok = _load_world_and_tokenizer(cfg, run, model_tok)
    distributed.barrier()
    if not distributed.is_main():
        world, tok = _load_world_and_tokenizer(cfg, run, model_tok)
    if not cfg.model.path:
        model = build_model(cfg.model, tok, seed=cfg.seed)
    device = device_of(model)
    trained = distributed.wrap(model)  # DDP under torchrun: the same parameters, gradients averaged over ranks
    main = distributed.is_main()
    optimizer = make_optimizer(t_cfg.optimizer, model.named_parameters(), t_cfg.lr, t_cfg.weight_decay)
    bf16 = uses_bf16(device)
    reserved = set(world.entities)
    params = param_count(model)

    start, elapsed, tokens_seen = 0, 0.0, 0
    ckpt = latest_checkpoint(run.ckpt_dir) if resume else None
    if resume and ckpt is None:
        raise RetainError(f"no checkpoint in {run.ckpt_dir} to resume from; start the run again without --resume")
    if ckpt:
        tensors, meta = load_checkpoint(ckpt)
        unpack_model(model, tensors)
        unpack_optimizer(optimizer, tensors, meta["optim"])
        unpack_rng(tensors, meta["rng"])
        start, elapsed, tokens_seen = meta["step"], meta["elapsed"], meta["tokens_seen"]
        if main:
            run.truncate_metrics(start - 1)
            print(f"resumed {run.path} at step {start} ({tokens_seen:,} tokens, {elapsed:.0f}s so far)")
    elif main:
        precision = "bf16 autocast" if bf16 else "fp32" + (" (this device has no bf16 hardware)" if t_cfg.bf16 else "")
        ranks = f" x {distributed.world_size()} ranks" if distributed.world_size() > 1 else ""
        shape = cfg.model.path or cfg.model.size + (f", width {cfg.model.width}" if cfg.model.width else "")
        print(f"pretraining {params:,} params ({shape}) on {device}{ranks} in {precision}; run dir {run.path}")

    quick = base_suites(world, seed=cfg.seed, n=cfg.eval.during_n)
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    t0 = time.perf_counter() - elapsed
    bar = progress(total=t_cfg.steps, initial=start, desc="pretrain", quiet=not main)
    for step in range(start, t_cfg.steps + 1):
        last = step == t_cfg.steps
        if main and (step % t_cfg.eval_every == 0 or last):
            metrics = headline(run_suites(model, tok, quick, cfg.eval.batch_size))
            run.log({"step": step, "tokens": tokens_seen, "seconds": time.perf_counter() - t0,
                     **{f"eval/{k}": v for k, v in metrics.items()}})  # fmt: skip
            bar.set_postfix(cb=f"{metrics['closed_book_acc']:.2f}", ob=f"{metrics['open_book_acc']:.2f}")
        if main and step > start and (step % t_cfg.ckpt_every == 0 or last):
            _save(run, model, optimizer, step, time.perf_counter() - t0, tokens_seen)
        distributed.barrier()  # the others wait while rank 0 evaluates and saves
        if last:
            break

        set_lr(optimizer, lr_at(step, t_cfg.steps, t_cfg.lr, t_cfg.warmup_steps, t_cfg.min_lr_ratio))
        batch = pretrain_batch(world, tok, cfg.mixture, data_seed, step, t_cfg.batch_size, t_cfg.seq_len, reserved)
        # the loss is a token sum over the global batch's predicted tokens: N ranks step as one process would
        n_items = (batch[1][:, 1:] != -100).sum() / distributed.world_size()
        ids, labels, positions = to_model(model, *distributed.my_rows(*batch))
        trained.train()
        with autocast(device):
            loss = forward_packed(trained, ids, positions, labels, n_items.to(device)).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += int((batch[0] != tok.pad_token_id).sum())
        if step % t_cfg.log_every == 0:
            mean = distributed.all_sum(loss).item() / distributed.world_size()  # the global batch's mean loss
            if main:
                run.log({"step": step, "tokens": tokens_seen, "seconds": time.perf_counter() - t0,
                         "train/loss": mean, "train/grad_norm": grad_norm.item(),
                         "train/lr": optimizer.param_groups[0]["lr"]})  # fmt: skip
            bar.set_description(f"pretrain loss {mean:.3f}")
        bar.update(1)
        if on_step:
            on_step(step)
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if not main:
        return {}

    print("final evaluation ...")
    final = run_suites(model, tok, base_suites(world, seed=cfg.seed + 1, n=cfg.eval.final_n), cfg.eval.batch_size)
    summary = {**headline(final), "params": params, "tokens_seen": tokens_seen, "seconds": round(seconds, 1),
               "steps": t_cfg.steps, "model_dir": str(run / "model"), "world_dir": str(run / "world"),
               **final}  # fmt: skip
    model.save_pretrained(str(run / "model"))
    tok.save_pretrained(str(run / "model"))
    run.write_summary(summary)
    from retain.train.report import write_pretrain_report

    write_pretrain_report(run, cfg, summary)
    print(_format_summary(summary, run.path))
    return summary


def pretrain_or_resume(cfg: PretrainConfig, out: Path) -> dict[str, Any]:
    """`cfg` pretrained into `out`, as a step of a larger study: read back when finished, resumed from its last
    checkpoint when stopped, started again when stopped before its first one (nothing to resume from).
    Returns the run's summary; a finished run of another config is a one-line error naming the keys."""
    if not (out / "summary.json").exists():
        started = (out / "ckpt").is_dir() and any((out / "ckpt").iterdir())
        if (out / "config.yaml").exists() and not started:
            shutil.rmtree(out)
        pretrain(cfg, out=str(out), resume=started)
        return json.loads((out / "summary.json").read_text())
    was, asked = flat(to_dict(from_dict(PretrainConfig, read_yaml(out / "config.yaml")))), flat(to_dict(cfg))
    differ = [k for k in asked if asked[k] != was.get(k) and k not in OPERATIONAL]
    if differ:
        raise RetainError(f"{out} holds a finished run of other values of {shown(differ, was, asked)}; choose "
                          "another --out, or delete it to train again")  # fmt: skip
    return json.loads((out / "summary.json").read_text())


def _save(run: RunDir, model, optimizer, step: int, elapsed: float, tokens_seen: int) -> Path:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    o_t, o_m = pack_optimizer(optimizer)
    r_t, r_m = pack_rng()
    meta = {"optim": o_m, "rng": r_m, "elapsed": elapsed, "tokens_seen": tokens_seen}
    return save_checkpoint(run.ckpt_dir, step, {**tensors, **o_t, **r_t}, meta)


def _format_summary(s: dict[str, Any], path: Path) -> str:
    keys = ["closed_book_acc", "closed_book_acc_bio_split", "open_book_acc", "heldout_template_acc",
            "binding_acc", "session_icl_acc", "session_stream_acc"]  # fmt: skip
    lines = [f"  {k:28s} {s[k]:.3f}" for k in keys]
    return (f"done in {s['seconds']:.0f}s, {s['tokens_seen']:,} tokens, {s['params']:,} params\n" + "\n".join(lines)
            + f"\nreport: {path / 'report.md'}\nmodel:  {path / 'model'}")  # fmt: skip


def main(cfg: PretrainConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain pretrain` (one process, or each rank under torchrun)."""
    try:
        pretrain(cfg, out, resume)
    finally:
        distributed.close()
