"""The device benchmark: four measurements on the run's device, each speed against a baseline measured in the
same run, written to docs/RESULTS.md with the device named (section `device_<cuda|cpu>`).

    python -m benchmarks.gpu                  # on a GPU machine: under 5 minutes on one H100
    python -m benchmarks.gpu --scale cpu      # the same four on 2 CPU cores, at the default base's shape (~10 min)
    python -m benchmarks.gpu --scale quick    # a check of the script on a CPU (minutes; printed, not recorded)

1. Pretraining throughput of configs/pretrain.yaml (tokens/s between the first logged step and the last).
2. A LoRA write (retain's write loop: `WeightMemory.optimize`) against Hugging Face `Trainer` + PEFT on the same
   rows, batch size, steps, rank and targets (tokens/s; target >= 1.2x on one GPU).
3. The RL inner loop: G = 8 LoRA adapters written in one batched loop against one at a time, same sessions and
   seeds (target >= 4x on one GPU, >= 2x on 2 CPU cores).
4. The continual loop end to end (configs/smoke/real.yaml) on SmolLM2 when models/smollm2-135m exists, else on a
   random-init Llama of ~100M parameters (timings only: its answers mean nothing).

The ~100M model and the LoRA rows come from the synthetic world (its tokenizer), so the script needs no download.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results import write_section
from retain.config import load_config
from retain.models.device import configure, device, uses_bf16

ROOT = Path(__file__).resolve().parents[1]
SCALES = {  # pretrain steps, LoRA rows per batch and steps, inner-loop steps, hidden/layers of the random model
    "full": dict(pretrain_steps=300, lora_batch=16, lora_steps=60, inner_steps=40, hidden=768, layers=12),
    "cpu": dict(pretrain_steps=100, lora_batch=8, lora_steps=20, inner_steps=20, hidden=128, layers=3),
    "quick": dict(pretrain_steps=30, lora_batch=4, lora_steps=6, inner_steps=4, hidden=64, layers=2),
}


def world_and_tokenizer():
    from retain.world.io import build_tokenizer
    from retain.world.world import WorldConfig, build_world

    world = build_world(WorldConfig())
    return world, build_tokenizer(world)


def random_llama(folder: Path, tok, hidden: int, layers: int) -> tuple[Path, int]:
    """A random-init Llama with the world's tokenizer, saved as a model folder (~100M parameters at 768 x 12)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 192),
                      max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder, sum(p.numel() for p in model.parameters())


def pretrain_throughput(out: Path, steps: int, quick: bool) -> dict:
    from retain.runs.rundir import RunDir
    from retain.train.pretrain import PretrainConfig, pretrain

    sets = ([f"train.steps={steps}", f"train.eval_every={steps}", f"train.ckpt_every={steps}", "train.log_every=10",
             "eval.during_n=8", "eval.final_n=16", f"device={device()}"]
            + (["model.size=tiny"] if quick else []))  # fmt: skip
    s = pretrain(load_config(PretrainConfig, ROOT / "configs" / "pretrain.yaml", sets), out=out)
    logs = [r for r in RunDir(out).metrics() if "train/loss" in r]
    a, b = logs[1], logs[-1]  # from step 10: the first steps warm the allocator and kernels up
    return {
        "params": s["params"],
        "steps": steps,
        "tokens_per_s": (b["tokens"] - a["tokens"]) / (b["seconds"] - a["seconds"]),
    }


def lora_rows(world, tok, n: int) -> list[list[int]]:
    """`n` transcripts of the world's sessions as token ids (start and end tokens), cycled."""
    texts = [s.transcript for s in world.sessions]
    return [tok(texts[i % len(texts)])["input_ids"][:256] for i in range(n)]


def retain_lora(model_dir: Path, rows: list[list[int]], batch: int, steps: int, lr: float) -> float:
    """Tokens/s of retain's write loop (bf16 autocast where native, grad clip, AdamW) on `rows`, in order."""
    from retain.memory import make_memory
    from retain.memory.base import MediumConfig
    from retain.models.build import load_model_and_tokenizer
    from retain.train.data import right_pad

    model, tok = load_model_and_tokenizer(model_dir)
    mem = make_memory(MediumConfig(kind="lora", rank=8, targets="qv", steps=steps, lr=lr, batch_size=batch), model, tok)
    batches = iter(range(0, len(rows), batch))

    def step():
        chunk = rows[next(batches) :][:batch]
        ids, mask = right_pad(chunk, tok.pad_token_id)
        labels = ids.masked_fill(mask == 0, -100)
        return mem.loss(ids, mask, labels), int(mask.sum())

    sync()
    t0 = time.perf_counter()
    tokens = mem.optimize(step)
    sync()
    return tokens / (time.perf_counter() - t0)


def trainer_lora(model_dir: Path, rows: list[list[int]], batch: int, steps: int, lr: float, out: Path) -> float:
    """Tokens/s of Hugging Face `Trainer` + PEFT on the same rows, batch size, steps, rank, targets and lr."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from retain.models.build import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
                             lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                             bf16=uses_bf16(device()), logging_strategy="no", save_strategy="no", report_to=[],
                             dataloader_num_workers=0, use_cpu=device().type == "cpu", disable_tqdm=True)  # fmt: skip
    data = [{"input_ids": r} for r in rows]
    collate = DataCollatorForLanguageModeling(tok, mlm=False)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
    tokens = sum(len(r) for r in rows[: steps * batch])
    sync()
    t0 = time.perf_counter()
    trainer.train()
    sync()
    return tokens / (time.perf_counter() - t0)


def inner_loop(model_dir: Path, world, steps: int) -> dict:
    """Episodes/min of the RL inner loop, G = 8 adapters batched against one at a time (same seeds)."""
    from retain.memory.base import Material, MediumConfig
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format
    from retain.rl.lora import write_and_answer

    model, tok = load_model_and_tokenizer(model_dir)
    use_format(tok, TextFormat.of(tok, "world", []))
    model.requires_grad_(False).eval()
    cfg = MediumConfig(kind="lora", rank=2, targets="mlp", steps=steps, lr=3e-3)
    sessions = world.sessions[:8]
    materials = [[Material(s.index, s.transcript, 0, transcript=s.transcript)] for s in sessions]
    questions = [s.questions[:4] for s in sessions]
    seeds = list(range(8))
    write_and_answer(model, tok, cfg, materials[:2], questions[:2], seeds[:2])  # warm-up: kernels, allocator
    out = {}
    for batched in (True, False):
        sync()
        t0 = time.perf_counter()
        write_and_answer(model, tok, cfg, materials, questions, seeds, batched=batched)
        sync()
        out["batched" if batched else "one_at_a_time"] = 8 * 60 / (time.perf_counter() - t0)
    return out


def continual_run(model_dir: Path, out: Path) -> dict:
    from retain.continual.loop import ContinualConfig, continual

    cfg = load_config(
        ContinualConfig, ROOT / "configs" / "smoke" / "real.yaml", [f"base={model_dir}", f"device={device()}"]
    )
    t0 = time.perf_counter()
    s = continual(cfg, out=out)
    return {
        "seconds": time.perf_counter() - t0,
        "media": {k: (m["acc"], m["write_seconds"]) for k, m in s["media"].items()},
    }


def sync() -> None:
    if device().type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="full")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="runs/device-bench")
    args = ap.parse_args()
    sc, quick = SCALES[args.scale], args.scale == "quick"
    dev = configure(args.device, "auto")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    world, tok = world_and_tokenizer()
    smol = ROOT / "models" / "smollm2-135m"
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rand, n_rand = random_llama(Path(tmp) / "llama", tok, sc["hidden"], sc["layers"])
        pre = pretrain_throughput(out / "pretrain", sc["pretrain_steps"], quick)
        rows = lora_rows(world, tok, sc["lora_batch"] * sc["lora_steps"])
        retain_lora(rand, rows, sc["lora_batch"], 2, 3e-4)  # warm-up, so neither side pays the first-call costs
        ours = retain_lora(rand, rows, sc["lora_batch"], sc["lora_steps"], 3e-4)
        theirs = trainer_lora(rand, rows, sc["lora_batch"], sc["lora_steps"], 3e-4, out / "trainer")
        inner = inner_loop(rand, world, sc["inner_steps"])
        real = smol if smol.exists() and not quick else rand
        cont = continual_run(real, out / "continual")
    total = time.perf_counter() - t_all

    what = "SmolLM2-135M" if real == smol else f"a random-init Llama of {n_rand / 1e6:.1f}M parameters (timings only)"
    media = "\n".join(f"| {k} | {acc:.3f} | {ws:.1f} |" for k, (acc, ws) in cont["media"].items())
    body = (f"Device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'} ({dev}); scale "
            f"`{args.scale}`; whole benchmark {total:.0f} s. "
            f"Precision: {'bf16 autocast' if uses_bf16(dev) else 'fp32'}.\n\n"
            "| measurement | this run | baseline, same run | ratio | target |\n| --- | ---: | ---: | ---: | --- |\n"
            f"| pretraining, configs/pretrain.yaml ({pre['params']:,} params) | {pre['tokens_per_s']:,.0f} tokens/s "
            "| - | - | - |\n"
            f"| LoRA write r8 qv, {sc['lora_steps']} steps x {sc['lora_batch']} rows, {n_rand / 1e6:.1f}M model | "
            f"{ours:,.0f} tokens/s | HF Trainer + PEFT {theirs:,.0f} tokens/s | {ours / theirs:.2f}x "
            "| >= 1.2x on one GPU |\n"
            f"| RL inner loop, G = 8 adapters, {sc['inner_steps']} steps | {inner['batched']:.1f} episodes/min | "
            f"one at a time {inner['one_at_a_time']:.1f} | {inner['batched'] / inner['one_at_a_time']:.2f}x | "
            ">= 4x on one GPU, >= 2x on 2 CPU cores |\n"
            f"| continual loop, configs/smoke/real.yaml on {what} | {cont['seconds']:.0f} s end to end "
            "| - | - | - |\n\n"
            "| medium (continual loop) | EM | write s |\n| --- | ---: | ---: |\n" + media)  # fmt: skip
    print(body)
    if not quick:
        write_section(f"device_{dev.type}", f"Device benchmark ({dev.type})", body)


if __name__ == "__main__":
    main()
