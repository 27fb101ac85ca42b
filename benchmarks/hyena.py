"""Hyena against attention: forward + backward time of one mixer (width 128; order-2 Hyena against causal
SDPA attention with 2 heads of 64, each with its projections) at 1k..32k tokens, batch 1, fp32, same run.
Writes docs/RESULTS.md (section `hyena_speed_<device>`). Target (issue): Hyena >= 3x faster at 16k tokens;
the crossover length reported.

    python -m benchmarks.hyena
    python -m benchmarks.hyena --lengths 1024 2048 4096 --reps 2    # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.results import write_section
from retain.models.backbone import Attention, BackboneConfig
from retain.models.device import configure
from retain.models.hyena import HyenaOperator

TARGET_AT, TARGET = 16384, 3.0


class Mixer(torch.nn.Module):
    """The backbone's attention (RoPE, causal SDPA, its projections) as a mixer: its output without the K/V."""

    def __init__(self, attention: torch.nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.attention(u, None)[0]


def seconds(mixer: torch.nn.Module, L: int, d: int, reps: int, dev: torch.device) -> float:
    """Median seconds of one forward + backward on (1, L, d), after one warm-up pass."""
    u = torch.randn(1, L, d, device=dev, requires_grad=True)
    times = []
    for i in range(reps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        mixer(u).pow(2).mean().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first pass is the warm-up
            times.append(time.perf_counter() - t0)
        mixer.zero_grad(set_to_none=True)
        u.grad = None
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = configure(args.device, "fp32")
    torch.manual_seed(0)
    hyena = HyenaOperator(args.d, l_max=max(args.lengths)).to(dev)
    attention = Mixer(Attention(BackboneConfig(d_model=args.d, n_heads=max(1, args.d // 64)), owns_kv=True)).to(dev)
    rows, ratios = [], {}
    for L in args.lengths:
        th, ta = seconds(hyena, L, args.d, args.reps, dev), seconds(attention, L, args.d, args.reps, dev)
        ratios[L] = ta / th
        rows.append(f"| {L:,} | {th * 1000:.1f} | {ta * 1000:.1f} | {ta / th:.2f}x |")
        print(rows[-1], flush=True)
    faster = [L for L in args.lengths if ratios[L] > 1]
    crossover = (f"Hyena is faster from {faster[0]:,} tokens on" if faster and all(ratios[L] > 1 for L in args.lengths
                 if L >= faster[0]) else "no clean crossover in the lengths measured")  # fmt: skip
    verdict = (f"at {TARGET_AT:,} tokens Hyena is {ratios[TARGET_AT]:.2f}x faster (target >= {TARGET}x): "
               f"{'met' if ratios[TARGET_AT] >= TARGET else 'not met'}" if TARGET_AT in ratios else
               f"{TARGET_AT:,} tokens not measured")  # fmt: skip
    body = (f"One mixer of width {args.d}, batch 1, fp32, forward + backward, median of {args.reps} after a "
            f"warm-up, on {dev}. Hyena: order 2, short conv 3, implicit filter (retain/models/hyena.py). "
            "Attention: the backbone's (retain/models/backbone.py: RoPE, causal `scaled_dot_product_attention`, "
            "q/k/v and output projections).\n\n"
            "| tokens | Hyena ms | attention ms | attention / Hyena |\n| ---: | ---: | ---: | ---: |\n"
            + "\n".join(rows) + f"\n\n- {crossover}\n- {verdict}")  # fmt: skip
    write_section(f"hyena_speed_{dev.type}", f"Hyena against attention ({dev.type})", body)


if __name__ == "__main__":
    main()
