"""Decoding: transformers' logits processors (temperature, top-k, top-p, locally typical) selected by a
`DecodingConfig`, and a learned adaptive temperature (a head on the last hidden state, trained on the
world's diversity labels). See docs/decoding.md."""

from retain.sampling.adaptive import AdaptiveTemperature, TemperatureHead, temperature
from retain.sampling.decoding import DecodingConfig, decoding, processors, sample

__all__ = [
    "AdaptiveTemperature",
    "DecodingConfig",
    "TemperatureHead",
    "decoding",
    "processors",
    "sample",
    "temperature",
]
