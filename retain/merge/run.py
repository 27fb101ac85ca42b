"""`retain merge`: merge saved LoRA adapters or model checkpoints with one method of retain.merge.ops.

    retain merge --method slerp --inputs runs/a/adapter,runs/b/adapter --out runs/merged
    retain merge --method ties --inputs m1,m2,m3 --base runs/base/model --density 0.2 --out runs/ties
    retain merge --method liti --inputs runs/merged/model --base runs/base/model --eta 0.3 --out runs/liti

Every method works on task vectors delta_i = theta_i - init and returns init + scale * merged delta. For
adapters init is zero and delta_i is the product scale * B @ A; the result is re-factored to `rank` by
truncated SVD (the relative error is printed and saved in merge.json) and loads with
`peft.PeftModel.from_pretrained`. For checkpoints init is `base` (needed by task_arithmetic, ties and liti;
without it slerp interpolates the weights themselves, as mergekit does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from retain.errors import RetainError
from retain.merge import io, ops
from retain.merge import lora as L

METHODS = ("linear", "task_arithmetic", "slerp", "ties", "ema", "liti")
NEEDS_BASE = ("task_arithmetic", "ties", "liti")


@dataclass
class MergeConfig:
    """What to merge and how."""

    method: Literal["linear", "task_arithmetic", "slerp", "ties", "ema", "liti"] = "linear"
    """linear (weighted mean), task_arithmetic (weighted sum of task vectors), slerp (two inputs at t, or M
    iterated as WARP does), ties (trim, elect sign, disjoint mean), ema (the inputs in order, step beta),
    liti (one input moved towards base by eta)."""
    inputs: list[str] = field(default_factory=list)
    """PEFT adapter directories, or model directories (all of one kind), comma-separated."""
    base: str = ""
    """Model directory of theta_init for checkpoints (task vectors); ignored for adapters, whose init is zero."""
    weights: list[float] = field(default_factory=list)
    """One weight per input (linear, task_arithmetic, ties); default all 1."""
    t: float = 0.5
    """slerp of two inputs: 0 gives the first, 1 the second."""
    density: float = 0.2
    """ties: fraction of each task vector's entries kept (largest magnitude), per tensor."""
    beta: float = 0.1
    """ema: mu <- (1 - beta) mu + beta theta_i over the inputs in order."""
    eta: float = 0.3
    """liti: init + eta (theta - init)."""
    scale: float = 1.0
    """The merged task vector is multiplied by this (the lambda of task arithmetic and TIES)."""
    rank: int = 0
    """Adapters: rank of the merged adapter (0: the largest input rank)."""

    def __post_init__(self) -> None:
        n = len(self.inputs)
        if n == 0:
            raise ValueError("inputs: give the adapters or checkpoints to merge, e.g. --inputs a,b")
        if self.method == "liti" and n != 1:
            raise ValueError(f"liti moves one input towards base; got {n} inputs")
        if self.method in ("slerp", "ema") and n < 2:
            raise ValueError(f"{self.method} needs at least two inputs, got {n}")
        if self.weights and len(self.weights) != n:
            raise ValueError(f"weights: {len(self.weights)} given for {n} inputs")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if self.rank < 0:
            raise ValueError(f"rank must be >= 0, got {self.rank}")


def merge_deltas(cfg: MergeConfig, deltas: list[ops.Tensors]) -> ops.Tensors:
    """The merged task vector of `deltas` by `cfg.method`, times `cfg.scale`."""
    w = cfg.weights or [1.0] * len(deltas)
    if cfg.method == "linear":
        out = ops.task_arithmetic_dicts(deltas, [x / sum(w) for x in w])
    elif cfg.method == "task_arithmetic":
        out = ops.task_arithmetic_dicts(deltas, w)
    elif cfg.method == "slerp":
        out = ops.slerp_dicts(*deltas, cfg.t) if len(deltas) == 2 else ops.slerp_many_dicts(deltas)
    elif cfg.method == "ties":
        out = ops.ties_dicts(deltas, cfg.density, w)
    elif cfg.method == "ema":
        out = deltas[0]
        for d in deltas[1:]:
            out = ops.ema_dicts(out, d, cfg.beta)
    else:  # liti
        out = ops.task_arithmetic_dicts(deltas, [cfg.eta])
    return {k: cfg.scale * v for k, v in out.items()}


def merge_adapters(cfg: MergeConfig, out: Path) -> dict:
    read = [L.read_adapter(p) for p in cfg.inputs]
    configs = [c for c, _ in read]
    deltas = [L.products(s, c) for c, s in read]
    ops.check_same_keys(deltas, cfg.inputs)
    rank = cfg.rank or max(L.rank_of(s) for _, s in read)
    state, errors = L.factor(merge_deltas(cfg, deltas), rank, configs[0])
    L.write_adapter(out, configs[0], state)
    return {"kind": "adapter", "rank": rank, "svd_error_max": max(errors.values()),
            "svd_error_mean": sum(errors.values()) / len(errors), "svd_error": errors}  # fmt: skip


def merge_checkpoints(cfg: MergeConfig, out: Path) -> dict:
    if cfg.method in NEEDS_BASE and not cfg.base:
        raise RetainError(f"{cfg.method} merges task vectors theta - theta_init: give --base MODEL_DIR")
    thetas = [io.read_model_dir(p) for p in cfg.inputs]
    init = io.read_model_dir(cfg.base) if cfg.base else {k: torch.zeros_like(v) for k, v in thetas[0].items()}
    ops.check_same_keys([init, *thetas], [cfg.base or "base", *cfg.inputs])  # one-line error naming the input
    merged = ops.apply(init, merge_deltas(cfg, ops.task_vectors(thetas, init)))
    io.write_model_dir(out, cfg.inputs[0], merged)
    return {"kind": "checkpoint"}


def merge(cfg: MergeConfig, out: str | None = None) -> dict:
    """Merge `cfg.inputs` into `out`; returns what merge.json records."""
    if not out:
        raise RetainError("give --out DIR for the merged adapter or checkpoint")
    dest = Path(out)
    if dest.exists() and not dest.is_dir():
        raise RetainError(f"--out {dest} is a file; give a directory for the merged adapter or checkpoint")
    if dest.exists() and any(dest.iterdir()):
        raise RetainError(f"{dest} is not empty; choose a new --out (nothing is overwritten)")
    missing = [p for p in cfg.inputs if not Path(p).exists()]
    if missing:
        raise RetainError(f"input not found: {missing[0]}")
    for p in cfg.inputs:
        if not L.is_adapter_dir(p) and not (Path(p) / "config.json").is_file():
            raise RetainError(f"input {p} holds neither a PEFT adapter (adapter_config.json) nor a model "
                              "checkpoint (config.json and safetensors)")  # fmt: skip
    kinds = {L.is_adapter_dir(p) for p in cfg.inputs}
    if len(kinds) > 1:
        raise RetainError("inputs mix PEFT adapters and model checkpoints; merge one kind at a time")
    record = merge_adapters(cfg, dest) if kinds.pop() else merge_checkpoints(cfg, dest)
    record = {"config": asdict(cfg), **record}
    from retain.runs.files import atomic_write_json

    atomic_write_json(dest / "merge.json", record)
    return record


def main(cfg: MergeConfig, out: str | None = None) -> None:
    """CLI entry point of `retain merge`."""
    r = merge(cfg, out)
    what = f"{r['kind']} of rank {r['rank']}" if r["kind"] == "adapter" else "checkpoint"
    print(f"merged {len(cfg.inputs)} inputs by {cfg.method} into {out} ({what})")
    if r["kind"] == "adapter":
        print(f"  truncated-SVD error ||delta - approx|| / ||delta||: max {r['svd_error_max']:.2e}, "
              f"mean {r['svd_error_mean']:.2e} over {len(r['svd_error'])} modules")  # fmt: skip
