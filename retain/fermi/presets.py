"""Published architectures with their published pretraining token counts.

Shapes are those of each model's Hugging Face `config.json`; token counts are from the model cards and
technical reports named in `source`. Mistral AI did not publish Mistral 7B's token count, so it is None
and the pretraining row says so instead of guessing.
"""

from __future__ import annotations

import difflib

from retain.errors import RetainError
from retain.fermi.arch import Arch

PRESETS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256, tied_embeddings=False,
             pretrain_tokens=15e12, source="Meta Llama 3 model card: over 15T tokens"),
        Arch("llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256, tied_embeddings=False,
             pretrain_tokens=15e12, source="Meta Llama 3 model card: over 15T tokens"),
        Arch("llama-3-405b", 126, 16384, 128, 8, 128, 53248, 128256, tied_embeddings=False,
             pretrain_tokens=15.6e12, source="The Llama 3 Herd of Models (Llama 3.1 405B): 15.6T tokens"),
        Arch("llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 128256, tied_embeddings=True,
             pretrain_tokens=9e12, source="Meta Llama 3.2 model card: up to 9T tokens"),
        Arch("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, tied_embeddings=False,
             pretrain_tokens=2e12, source="Llama 2 paper (Touvron et al. 2023): 2T tokens"),
        Arch("mistral-7b", 32, 4096, 32, 8, 128, 14336, 32000, tied_embeddings=False,
             pretrain_tokens=None, source="Mistral 7B v0.1 config; pretraining tokens not published"),
        Arch("qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064, tied_embeddings=False, attention_bias=True,
             pretrain_tokens=18e12, source="Qwen2.5 technical report: up to 18T tokens"),
        Arch("qwen2.5-0.5b", 24, 896, 14, 2, 64, 4864, 151936, tied_embeddings=True, attention_bias=True,
             pretrain_tokens=18e12, source="Qwen2.5 technical report: up to 18T tokens"),
        Arch("gemma-2-9b", 42, 3584, 16, 8, 256, 14336, 256000, tied_embeddings=True, norms_per_layer=4,
             pretrain_tokens=8e12, source="Gemma 2 technical report: 8T tokens for 9B"),
    ]
}  # fmt: skip


def get_preset(name: str) -> Arch:
    """A preset by name; an unknown name lists the presets and the closest one."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise RetainError(f"unknown model preset '{name}'; choices: {', '.join(PRESETS)}{hint}")
