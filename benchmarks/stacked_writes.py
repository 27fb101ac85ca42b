"""LoRA media written as one stack (`batch_writes: true`) against one at a time: a replay grid of G LoRA media
writes the same sessions both ways on a real model, same seeds; write seconds, the speed-up and how far the
adapters of the two ways lie apart. Written to docs/RESULTS.md (section `stacked_writes_<device>`).

    python -m benchmarks.stacked_writes                                  # SmolLM2 (models/smollm2-135m)
    python -m benchmarks.stacked_writes --base models/gemma3-270m --media 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.results import write_section
from retain.memory import Material, MediumConfig
from retain.memory.stacked import Stack, StackedLora, write_stacked
from retain.models.build import load_model_and_tokenizer
from retain.models.device import configure, uses_bf16
from retain.world.io import load_user_sessions

ROOT = Path(__file__).resolve().parents[1]


def grid(n: int, steps: int, batch: int) -> list[MediumConfig]:
    """n LoRA media that differ only in how much of the earlier sessions they replay."""
    return [MediumConfig(kind="lora", name=f"replay-{i / n:.2f}", rank=4, targets="mlp", steps=steps, lr=3e-4,
                         batch_size=batch, replay=i / n, dtype="fp32") for i in range(n)]  # fmt: skip


def write(base: Path, media: list[MediumConfig], materials: list[Material],
          seed: int = 7) -> tuple[float, list[list[torch.Tensor]]]:  # fmt: skip
    """Seconds to write `materials` into one stack of `media` (adapter g initialised from `seed + g`), and
    each medium's adapter after."""
    model, tok = load_model_and_tokenizer(base)
    stack = Stack(model, media[0], [seed + g for g, _ in enumerate(media)])
    views = [StackedLora(stack, g, tok, m, seed=0) for g, m in enumerate(media)]
    t0 = time.perf_counter()
    for material in materials:
        write_stacked(views, material)
    return time.perf_counter() - t0, [[t.detach().clone() for t in v.trainable()] for v in views]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="models/smollm2-135m")
    ap.add_argument("--data", default="data/real/world_sessions.jsonl")
    ap.add_argument("--media", type=int, default=4)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = configure(args.device, "auto")
    sessions = load_user_sessions(args.data)[: args.sessions]
    materials = [Material(s.index, s.transcript, 0, transcript=s.transcript) for s in sessions]
    media = grid(args.media, args.steps, args.batch)
    base = Path(args.base)
    write(base, media[:1], materials[:1])  # warm-up: neither way pays the first-call costs
    stacked, together = write(base, media, materials)
    alone = [write(base, [m], materials, seed=7 + g) for g, m in enumerate(media)]  # the stack's seeds
    one_by_one = sum(s for s, _ in alone)
    apart = max(float(torch.cat([(a - b).flatten() for a, b in zip(together[g], tensors)]).norm()
                      / torch.cat([b.flatten() for b in tensors]).norm())
                for g, (_, (tensors,)) in enumerate(alone))  # fmt: skip
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    body = (f"Base `{base}`, {len(materials)} sessions of `{args.data}`, G = {args.media} LoRA media (rank 4, MLP, "
            f"replay 0 to {(args.media - 1) / args.media:.2f}), {args.steps} steps x {args.batch} rows per session "
            f"each. Device {device} ({dev}), {'bf16 autocast' if uses_bf16(dev) else 'fp32'}.\n\n"
            "| writes | seconds | ratio |\n| --- | ---: | ---: |\n"
            f"| one stack, one forward for all | {stacked:.1f} | {one_by_one / stacked:.2f}x |\n"
            f"| one medium at a time | {one_by_one:.1f} | 1.00x |\n\n"
            f"Largest relative distance between a medium's adapter written in the stack and written alone: "
            f"{apart:.1e} (bf16 autocast rounds the two forwards differently; "
            "in fp32 the tests hold it to 1e-4).")  # fmt: skip
    print(body)
    write_section(f"stacked_writes_{dev.type}", f"Stacked LoRA writes ({dev.type})", body)


if __name__ == "__main__":
    main()
