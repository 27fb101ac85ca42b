"""Multi-query associative recall (MQAR, Zoology): which small Llama shapes learn content-addressed lookup,
and in how many steps? The in-context baseline of the continual loop needs it (docs/log.md, "binding").

    python -m benchmarks.mqar                                    # every variant, 1,000 steps each, CPU
    python -m benchmarks.mqar --variants tiny --steps 20000 --device cuda --section mqar_gpu
    python -m benchmarks.mqar --variants micro --key-tokens 2 --section mqar_2token   # keys of two tokens

An example is `k1 v1 k2 v2 ... kn vn` (distinct keys of `--key-tokens` tokens, as the world's names have
two; single-token values), then every key again in shuffled order, each followed by its value. The loss is
on those answers only; accuracy is the argmax at each answer position, on fresh examples, per number of
pairs n (a model that copies some value of the context scores about 1/n). The variants (VARIANTS) walk from
a micro Llama to retain's tiny default one change at a time. Writes one JSONL curve per variant and a
section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.results import write_section


def batch(n: int, size: int, keys: int, values: int, g: torch.Generator,
          key_tokens: int = 1) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """`size` examples of n pairs: ids (size, 2n(key_tokens + 1)) and labels (-100 except at the queried
    values). Token 0 is unused; key tokens are 1..keys, values keys+1..keys+values. A key is `key_tokens`
    tokens (distinct as a tuple, so two keys may share a token, as two people may share a first name)."""
    idx = torch.rand(size, keys**key_tokens, generator=g).argsort(-1)[:, :n]  # a random n-subset of all keys
    k = torch.stack([idx // keys**i % keys for i in reversed(range(key_tokens))], -1) + 1  # (size, n, key_tokens)
    v = torch.randint(keys + 1, keys + values + 1, (size, n, 1), generator=g)
    order = torch.rand(size, n, generator=g).argsort(-1)
    pairs = torch.cat([k, v], -1)  # (size, n, key_tokens + 1)
    asked = pairs.gather(1, order[..., None].expand_as(pairs))
    ids = torch.cat([pairs.flatten(1), asked.flatten(1)], 1)
    labels = torch.full_like(ids, -100)
    labels[:, n * (key_tokens + 1) + key_tokens :: key_tokens + 1] = asked[..., -1]
    return ids, labels


def model_for(args, vocab: int):
    """A fresh Llama: a named size of retain's default model (GQA, tied embeddings), or the micro shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from retain.models.build import llama_config
    from retain.models.config import ModelConfig

    if args.size:
        cfg = llama_config(ModelConfig(size=args.size), vocab, 0, 0, 0)
    else:
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=args.d_model, intermediate_size=4 * args.d_model,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads or args.heads,
                          max_position_embeddings=2 * args.max_pairs * (args.key_tokens + 1) + 8,
                          tie_word_embeddings=False)  # fmt: skip
    if args.tie is not None:
        cfg.tie_word_embeddings = args.tie
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(cfg)


def answer_logits(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a labelled answer (position t predicts t+1), and those answers."""
    logits = model(input_ids=ids).logits[:, :-1]
    target = labels[:, 1:]
    m = target != -100
    return logits[m], target[m]


def loss_and_hits(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy on the labelled answers and the fraction whose argmax is right."""
    logits, target = answer_logits(model, ids, labels)
    return F.cross_entropy(logits.float(), target), (logits.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def evaluate(model, args, ns: list[int], device: str) -> dict[str, float]:
    """Accuracy at each number of pairs in `ns`, on 512 examples drawn the same way at every call."""
    g = torch.Generator().manual_seed(10_000 + args.seed)  # the same held-out examples at every evaluation
    model.eval()
    out = {}
    for n in ns:
        ids, labels = batch(n, 512, args.keys, args.values, g, args.key_tokens)
        out[f"acc@{n}"] = loss_and_hits(model, ids.to(device), labels.to(device))[1]
    model.train()
    return out


# Named shapes, each a change from the micro Llama (d_model 64, 2 layers, 2 heads, untied embeddings) towards
# retain's tiny default (d_model 128, 4 layers, 4 heads over 2 KV heads, tied embeddings).
VARIANTS: dict[str, dict] = {
    "micro": {},
    "micro-tied": {"tie": True},  # input and output embeddings shared
    "micro-4-layers": {"layers": 4},
    "d128-gqa": {"d_model": 128, "heads": 4, "kv_heads": 2},  # tiny's width and heads, 2 layers, untied
    "tiny-untied": {"size": "tiny", "tie": False},
    "tiny": {"size": "tiny"},
}


def warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The probes' schedule: linear warm-up over the first 5% of `steps`, times a cosine from 1 to 0 over all of
    them (the product, so the cosine starts at step 0)."""
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))  # fmt: skip


def train(args, log_path: Path) -> tuple[list[dict], int]:
    """Train one model on MQAR; returns its evaluations (every `eval_every` steps) and its parameter count."""
    from tqdm import tqdm

    model = model_for(args, args.keys + args.values + 1).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.1)
    sched = warmup_cosine(opt, args.steps)
    g = torch.Generator().manual_seed(args.seed)
    rows, t0 = [], time.perf_counter()
    with open(log_path, "w") as log:
        bar = tqdm(range(args.steps + 1), desc=log_path.stem, mininterval=2)
        for step in bar:
            if step % args.eval_every == 0 or step == args.steps:
                row = {
                    "step": step,
                    "seconds": round(time.perf_counter() - t0, 1),
                    **evaluate(model, args, args.ns, args.device),
                }
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k.startswith("acc")})
            if step == args.steps:
                break
            n = int(torch.randint(args.min_pairs, args.max_pairs + 1, (1,), generator=g))
            ids, labels = batch(n, args.batch_size, args.keys, args.values, g, args.key_tokens)
            logits, target = answer_logits(model, ids.to(args.device), labels.to(args.device))
            loss = F.cross_entropy(logits.float(), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return rows, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=0, help="key-value heads (GQA); 0: as many as heads")
    ap.add_argument("--size", choices=["tiny", "small", "base"], help="retain's default model instead of the micro one")
    ap.add_argument(
        "--tie",
        action=argparse.BooleanOptionalAction,
        help="tie input and output embeddings "
        "(default: the model's own choice: tied for the named sizes, untied for the micro one)",
    )
    ap.add_argument("--min-pairs", type=int, default=2)
    ap.add_argument("--max-pairs", type=int, default=16)
    ap.add_argument("--keys", type=int, default=200, help="key vocabulary (the world has ~200 names)")
    ap.add_argument("--values", type=int, default=400)
    ap.add_argument("--key-tokens", type=int, default=1, help="tokens per key (the world's names have two)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/mqar")
    ap.add_argument("--section", default="mqar", help="name of the RESULTS.md section")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    if not 1 <= args.min_pairs <= args.max_pairs <= args.keys or not 1 <= args.key_tokens <= 3:
        raise SystemExit("error: need 1 <= --min-pairs <= --max-pairs <= --keys and 1 <= --key-tokens <= 3")
    args.ns = [n for n in (2, 4, 8, 16, 32, 64) if args.min_pairs <= n <= args.max_pairs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    solved = f"acc@{args.ns[-1]}"
    head = ("| variant | params | " + " | ".join(f"n={n} (chance {1 / n:.2f})" for n in args.ns)
            + f" | first step with n={args.ns[-1]} >= 0.9 | seconds |")  # fmt: skip
    lines = [head, "| --- |" + " ---: |" * (len(args.ns) + 3)]
    for name in names:
        run = argparse.Namespace(**{**vars(args), **VARIANTS[name]})
        rows, params = train(run, out / f"{name}.jsonl")
        first = next((r["step"] for r in rows if r[solved] >= 0.9), None)
        last = rows[-1]
        when = first if first is not None else f"not within {args.steps}"
        lines.append(
            f"| {name} | {params:,} | "
            + " | ".join(f"{last[f'acc@{n}']:.2f}" for n in args.ns)
            + f" | {when} | {last['seconds']:.0f} |"
        )
    body = (f"Each variant trained from scratch for {args.steps} steps: AdamW lr {args.lr} (warm-up, cosine), "
            f"{args.batch_size} examples per step of {args.min_pairs}-{args.max_pairs} pairs, keys of "
            f"{args.key_tokens} token(s) from {args.keys}, "
            f"{args.values} values; accuracy after the last step on 512 held-out examples per n (evaluated every "
            f"{args.eval_every} steps; curves in `{out}/*.jsonl`).\n\n" + "\n".join(lines))  # fmt: skip
    write_section(args.section, "Associative recall (MQAR): which Llama shapes learn content lookup", body)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # each variant takes minutes: no resume, but nothing written is lost
        raise SystemExit(
            "\ninterrupted: docs/RESULTS.md is unchanged; the curves evaluated so far are in --out"
        ) from None
