"""Worker of tests/test_distributed.py: for each weight medium (SFT and distill, with replay) the gradient of
its first step on a smoke base's session, then the medium after writing two sessions; rank 0 saves both.
Run alone, or under torchrun to split the batches:

    python tests/ddp_writes.py BASE OUT.safetensors
    torchrun --nproc_per_node 2 tests/ddp_writes.py BASE OUT.safetensors
"""

import random
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from retain.memory import Material, MediumConfig, make_memory
from retain.models.build import load_model_and_tokenizer
from retain.models.device import configure, device
from retain.runs import distributed
from retain.runs.seed import seed_everything
from retain.world.io import load_world

MEDIA = [
    MediumConfig(kind="lora", steps=3, batch_size=4, lr=1e-2, replay=0.25, base_replay=0.25, dtype="fp32"),
    MediumConfig(kind="lora", objective="distill", queries="self_study", n_queries=4, steps=3, batch_size=4,
                 lr=1e-2, replay=0.25, base_replay=0.25, dtype="fp32"),
    MediumConfig(kind="soft_prompt", prompt_tokens=3, steps=3, batch_size=4, lr=1e-2, dtype="fp32"),
    MediumConfig(kind="kv_prefix", objective="distill", queries="spans", n_queries=4, prompt_tokens=4, steps=3,
                 batch_size=4, lr=1e-2, dtype="fp32"),
]  # fmt: skip


def memory(cfg: MediumConfig, base: Path, seed: int):
    model, tok = load_model_and_tokenizer(base / "model")
    return make_memory(cfg, model, tok, base_text=lambda rng: "Ada Lindqvist lives in Lyon .", seed=seed)


def first_step(mem, material: Material, rng: random.Random) -> tuple[torch.Tensor, int]:
    """The loss of the medium's first write step on `material` (this rank's share under torchrun)."""
    if mem.cfg.objective == "distill":
        return mem.distill_steps(material, rng)[0]()
    return mem.sft_step(material, rng)


def main(base: Path, out: Path) -> None:
    torch.set_num_threads(1)
    configure("cpu", "fp32")
    distributed.init(device())
    world = load_world(base / "world")
    tensors = {}
    sessions = [Material(s.index, s.transcript, 10, transcript=s.transcript, questions=list(s.questions))
                for s in world.sessions[:2]]  # fmt: skip
    for i, cfg in enumerate(MEDIA):
        seed_everything(i)
        mem = memory(cfg, base, i)
        if cfg.kind != "kv_prefix":  # its prefix is made by the first write
            first_step(mem, sessions[0], random.Random(i))[0].backward()
            distributed.sum_grads(mem.trainable())
            tensors |= {f"grad.{i}.{cfg.kind}.{j}": p.grad.contiguous() for j, p in enumerate(mem.trainable())}
        seed_everything(i)
        mem = memory(cfg, base, i)
        for s in sessions:
            mem.write(s)
        tensors |= {f"written.{i}.{cfg.kind}.{j}": p.detach().contiguous() for j, p in enumerate(mem.trainable())}
    if distributed.is_main():
        save_file(tensors, str(out))
    distributed.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
