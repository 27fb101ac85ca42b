"""Memory media behind one interface: `write(material) -> cost`, `answer(questions) -> answers`, `nbytes()`.

See docs/memory.md for the media, their options and their byte accounting.
"""

from __future__ import annotations

from retain.memory.base import Material, MediumConfig, Memory, NoMemory, WriteCost
from retain.memory.context import ContextMemory
from retain.memory.kv_prefix import KVPrefixMemory
from retain.memory.weights import FullMemory, LoraMemory, SoftPromptMemory

KINDS = {"none": NoMemory, "context": ContextMemory, "lora": LoraMemory, "soft_prompt": SoftPromptMemory,
         "kv_prefix": KVPrefixMemory, "full": FullMemory}  # fmt: skip


def make_memory(cfg: MediumConfig, model, tokenizer, base_text=None, shot_pool=None, seed: int = 0) -> Memory:
    """The medium `cfg.kind` around `model` (which it may modify: pass a fresh copy per medium).
    `base_text(rng)` draws base-knowledge text for replay; `shot_pool` holds questions for many-shot ICL."""
    cfg.check_model(model.config)  # before a medium modifies the model
    cls = KINDS[cfg.kind]
    if cls is NoMemory:
        return cls(model, tokenizer, cfg)
    if cls is ContextMemory:
        return cls(model, tokenizer, cfg, shot_pool=shot_pool, seed=seed)
    return cls(model, tokenizer, cfg, base_text=base_text, seed=seed)


__all__ = ["KINDS", "ContextMemory", "FullMemory", "KVPrefixMemory", "LoraMemory", "Material", "MediumConfig",
           "Memory", "NoMemory", "SoftPromptMemory", "WriteCost", "make_memory"]  # fmt: skip
