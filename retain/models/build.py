"""The default base model (Hugging Face `LlamaForCausalLM`, random init, GQA) and loading of any local
Hugging Face causal LM by path. Nothing is downloaded: `local_files_only=True`, no remote code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from retain.errors import RetainError
from retain.models.backbone import (  # registers model type retain_backbone
    BackboneForCausalLM,
    BackboneLMConfig,
)
from retain.models.config import ModelConfig
from retain.models.device import device


def llama_config(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> LlamaConfig:
    """The HF config of a named size for a given vocabulary."""
    d, layers, heads, kv_heads, ff = cfg.shape()
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=d,
        intermediate_size=ff,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_dropout=cfg.dropout,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        architectures=["LlamaForCausalLM"],
    )


def backbone_config(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> BackboneLMConfig:
    """The Hugging Face config of the backbone with `cfg`'s switches, at a named size."""
    llama = llama_config(cfg, vocab_size, pad_id, bos_id, eos_id)
    return BackboneLMConfig(vocab_size=vocab_size, hidden_size=llama.hidden_size,
                            intermediate_size=llama.intermediate_size, num_hidden_layers=llama.num_hidden_layers,
                            num_attention_heads=llama.num_attention_heads,
                            num_key_value_heads=llama.num_key_value_heads, position=cfg.position,
                            kv_layers=cfg.kv_layers, loop=cfg.loop, first_layer_window=cfg.first_layer_window,
                            window_heads=cfg.window_heads,
                            rope_theta=cfg.rope_theta,
                            max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=cfg.tie_embeddings,
                            pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id)  # fmt: skip


def build_model(cfg: ModelConfig, tokenizer, seed: int = 0) -> PreTrainedModel:
    """A freshly initialised default model sized by `cfg.size` for `tokenizer`'s vocabulary, on the run's
    device (initialised on the CPU, so the same seed gives the same weights on any device): Llama, or the
    backbone when a switch (`position`, `kv_layers`, `loop`) is set, starting from the weights of the Llama
    of the same seed wherever a name and shape match, so that a switch is compared from the same draw (with
    m = L, every weight)."""
    ids = (len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(cfg, *ids))
        if cfg.switched:  # the Llama of the same seed's weights wherever a name and shape match (docs/backbone.md)
            backbone = BackboneForCausalLM(backbone_config(cfg, *ids))
            plain = model.state_dict()
            with torch.no_grad():
                for name, p in backbone.state_dict().items():
                    if name in plain and plain[name].shape == p.shape:
                        p.copy_(plain[name])
            model = backbone
    return model.to(device())


def check_causal_lm_dir(path: str | Path) -> Path:
    """Raise a one-line RetainError unless `path` is a local HF causal-LM directory."""
    path = Path(path)
    if not path.exists():
        raise RetainError(f"model path not found: {path}")
    if not (path / "config.json").is_file():
        raise RetainError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise RetainError(f"{path / 'config.json'} is not valid JSON: {e.msg}") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = config.get("architectures") or []
    causal = (any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) if archs
              else config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)  # fmt: skip
    if not causal:
        what = ", ".join(archs) or config.get("model_type", "unknown")
        raise RetainError(f"{path} is not a causal language model ({what}); retain needs a *ForCausalLM checkpoint")
    if config.get("auto_map"):
        raise RetainError(
            f"{path} needs remote code (auto_map in config.json); retain loads only built-in architectures"
        )
    return path


def model_config(path: str | Path):
    """The Hugging Face config of a local model folder; a one-line RetainError when it cannot be read."""
    from transformers import AutoConfig

    path = check_causal_lm_dir(path)
    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # an empty or foreign config.json: ValueError, KeyError, OSError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RetainError(f"{path / 'config.json'} is not a model config transformers can read: {first}") from None


def load_model(path: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load a local HF causal LM onto the run's device (`retain.models.device`); any failure is a one-line
    RetainError that names the path."""
    from transformers import AutoModelForCausalLM

    path = check_causal_lm_dir(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, trust_remote_code=False,
                                                     dtype=dtype)  # fmt: skip
    except Exception as e:  # transformers raises OSError, ValueError, safetensors errors...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RetainError(f"could not load the model in {path}: {first}") from None
    return model.to(device())


def load_model_and_tokenizer(path: str | Path, dtype: torch.dtype = torch.float32):
    """A local model directory with its tokenizer (checked to match the embedding size)."""
    model = load_model(path, dtype)
    tok = load_tokenizer(path)
    if len(tok) > model.get_input_embeddings().num_embeddings:
        raise RetainError(f"tokenizer in {path} has {len(tok)} tokens but the model embeds only "
                          f"{model.get_input_embeddings().num_embeddings}")  # fmt: skip
    return model, tok


def load_tokenizer(path: str | Path):
    """A tokenizer saved with `save_pretrained` (the world's, or a local Hugging Face model's)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise RetainError(f"tokenizer directory not found: {path}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as e:
        raise RetainError(
            f"{path} holds no loadable tokenizer ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    if tok.pad_token is None:  # many causal-LM tokenizers ship without one; generation pads with eos
        tok.pad_token = tok.eos_token
    return tok


def param_count(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameters counted once even when tied."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
