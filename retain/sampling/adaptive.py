"""A learned adaptive temperature (after Dynamic Stochastic Decoding, Li et al. 2024): a small head on the
model's last hidden state predicts a diversity score s in [0, 1] per token, and a bounded, monotone mapping
turns it into a sampling temperature for that step.

The three mappings are this project's own definitions (no primary source gives equations), each from
[t_min, t_max], t_min at s = 0 and t_max at s = 1:

    linear            T = t_min + (t_max - t_min) s
    exponential       T = t_min (t_max / t_min) ** s                 (geometric: equal ratios per step of s)
    inverse_sigmoid   T = t_min + (t_max - t_min) (sig(k (s - 1/2)) - sig(-k/2)) / (sig(k/2) - sig(-k/2))
                      an S-curve with steepness k = 10: near t_min until s ~ 0.3, near t_max after s ~ 0.7.

At generation time `AdaptiveTemperature` is a Hugging Face logits processor: a forward hook on the model's
final norm keeps the last hidden state, so it works in the package's `generate` and in `model.generate`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import LogitsProcessor

from retain.errors import RetainError
from retain.merge.io import read_safetensors, write_safetensors
from retain.models.device import device_of

Mapping = Literal["linear", "exponential", "inverse_sigmoid"]
MAPPINGS = ("linear", "exponential", "inverse_sigmoid")
STEEPNESS = 10.0


def temperature(score: torch.Tensor, mapping: Mapping, t_min: float, t_max: float) -> torch.Tensor:
    """The temperature for diversity `score` in [0, 1] (clamped) under `mapping`, within [t_min, t_max]."""
    if not 0 < t_min <= t_max:
        raise ValueError(f"need 0 < t_min <= t_max, got {t_min}, {t_max}")
    s = score.clamp(0.0, 1.0)
    if mapping == "linear":
        return t_min + (t_max - t_min) * s
    if mapping == "exponential":
        return t_min * (t_max / t_min) ** s
    if mapping == "inverse_sigmoid":
        lo, hi = 1 / (1 + math.exp(STEEPNESS / 2)), 1 / (1 + math.exp(-STEEPNESS / 2))
        return t_min + (t_max - t_min) * (torch.sigmoid(STEEPNESS * (s - 0.5)) - lo) / (hi - lo)
    raise ValueError(f"unknown mapping '{mapping}'; choices: {', '.join(MAPPINGS)}")


class TemperatureHead(nn.Module):
    """hidden (..., d) -> diversity score (...,) in (0, 1): a one-hidden-layer MLP and a sigmoid."""

    def __init__(self, d_model: int, d_hidden: int = 64):
        super().__init__()
        self.d_model, self.d_hidden = d_model, d_hidden
        self.net = nn.Sequential(nn.Linear(d_model, d_hidden), nn.GELU(), nn.Linear(d_hidden, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(hidden.float())).squeeze(-1)

    def save(self, path: str | Path, **meta) -> None:
        """head.safetensors and head.json (sizes and `meta`, e.g. how it was trained) in directory `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_safetensors(path / "head.safetensors", self.state_dict())
        (path / "head.json").write_text(json.dumps({"d_model": self.d_model, "d_hidden": self.d_hidden, **meta},
                                                   indent=2) + "\n")  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> TemperatureHead:
        path = Path(path)
        try:
            meta = json.loads((path / "head.json").read_text())
        except FileNotFoundError:
            raise RetainError(f"{path} holds no temperature head (no head.json); train one with "
                              "python -m benchmarks.decoding") from None  # fmt: skip
        head = cls(meta["d_model"], meta["d_hidden"])
        try:
            head.load_state_dict(read_safetensors(path / "head.safetensors"))
        except RuntimeError as e:
            raise RetainError(f"{path / 'head.safetensors'} does not fit head.json: {str(e).splitlines()[0]}") from None
        return head.eval()


def final_norm(model: nn.Module) -> nn.Module:
    """The module whose output is the last hidden state (the final norm of a decoder-only HF model)."""
    found = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == "norm" and ".layers." not in n]
    if not found:
        raise RetainError(f"{type(model).__name__} has no final `norm` module; adaptive temperature needs one")
    return found[-1]


class AdaptiveTemperature(LogitsProcessor):
    """Divides each row's scores by the temperature the head gives its last hidden state.

    Use as a context manager around generation (it hooks the model's final norm and unhooks on exit):
        with AdaptiveTemperature(model, head, "exponential", 0.1, 1.5) as proc:
            generate(model, prompts, ..., do_sample=True, logits_processor=LogitsProcessorList([proc]))
    `temperatures` collects the temperature of every step (rows x steps), for inspection."""

    def __init__(self, model: nn.Module, head: TemperatureHead, mapping: Mapping, t_min: float, t_max: float):
        if head.d_model != model.config.hidden_size:
            raise RetainError(f"the temperature head reads {head.d_model}-wide states; this model's are "
                              f"{model.config.hidden_size}; train a head for this model")  # fmt: skip
        temperature(torch.zeros(1), mapping, t_min, t_max)  # validates mapping and bounds now
        head = head.to(device_of(model))
        self.model, self.head, self.mapping, self.t_min, self.t_max = model, head, mapping, t_min, t_max
        self.last: torch.Tensor | None = None
        self.temperatures: list[torch.Tensor] = []
        self._hook = None

    def __enter__(self) -> AdaptiveTemperature:
        def keep(_module, _inputs, output):
            self.last = output[:, -1]

        self._hook = final_norm(self.model).register_forward_hook(keep)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.last is None:
            raise RuntimeError("AdaptiveTemperature saw no hidden state: use it inside `with`")
        t = temperature(self.head(self.last), self.mapping, self.t_min, self.t_max).to(scores.dtype)
        self.temperatures.append(t.detach().cpu())
        return scores / t[:, None]
