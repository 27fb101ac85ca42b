"""Data parallelism through `torch.distributed`, launched by torchrun (no launcher of our own):

    torchrun --nproc_per_node 2 -m retain pretrain configs/pretrain.yaml --out runs/base
    torchrun --nproc_per_node 2 -m retain run configs/distill.yaml --out runs/distill

Every rank builds the same global batch (batches are a pure function of seed and step) and trains on its
contiguous slice of rows; the gradients are summed over ranks (DDP in pretraining; `sum_grads` for a memory's
tensors). Losses are token sums divided by the global token count, so N ranks take the same steps as one
process on the whole batch. Pretraining: rank 0 alone evaluates and writes the run directory while the
others wait at a barrier. `retain run`: every rank writes every medium; what is sampled (materials, queries)
is rank 0's, sent to all; the questions are answered in shares (`spread`); rank 0 alone writes files.
NCCL between GPUs, gloo between CPU processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from retain.errors import RetainError


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> None:
    """Join the process group torchrun set up (NCCL on a GPU, gloo on the CPU); nothing when run alone."""
    if launched() and not dist.is_initialized():
        gpu = device.type == "cuda"
        dist.init_process_group("nccl" if gpu else "gloo", device_id=device if gpu else None)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a run path chosen from the clock, say)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over ranks (a copy; `x` itself unchanged)."""
    x = x.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def check_divides(rows: int, key: str) -> None:
    """A one-line error when the ranks cannot split `rows` evenly."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if rows % n:
        raise RetainError(f"{key}={rows} does not split over {n} ranks (torchrun --nproc_per_node {n}); "
                          f"use a multiple of {n}")  # fmt: skip


def my_rows(*batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of the rows of a global batch."""
    n, r = world_size(), rank()
    per = batch[0].shape[0] // n
    return tuple(t[r * per : (r + 1) * per] for t in batch)


def my_share(items: list) -> list:
    """This rank's contiguous part of `items` (the first ranks take one more when they do not split evenly)."""
    n, r = world_size(), rank()
    per, extra = divmod(len(items), n)
    lo = r * per + min(r, extra)
    return items[lo : lo + per + (r < extra)]


def spread(fn: Callable[[list], list], items: list) -> list:
    """`fn(items)` computed in parts: each rank maps its share, every rank gets the whole result in order.
    `fn` must map each item on its own (an answer per question)."""
    part = my_share(items)
    mine = fn(part) if part else []
    if not dist.is_initialized():
        return mine
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, mine)
    return [x for p in parts for x in p]


def sum_grads(params: list[torch.Tensor]) -> None:
    """Sum the gradients of `params` over ranks, in place (one all-reduce over them flattened). For tensors
    DDP cannot wrap: a soft prompt or a KV prefix is no parameter of the model's modules."""
    if not dist.is_initialized():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p)


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """`model` under DistributedDataParallel when launched by torchrun; `model` itself otherwise."""
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
