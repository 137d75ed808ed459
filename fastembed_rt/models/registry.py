"""model_type (config.json) → the builder of our packed-sequence model for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .bert import build_bert
from .distilbert import build_distilbert


@dataclass(frozen=True)
class Architecture:
    build: Callable
    attention: str
    positions: str


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(build_bert, "bidirectional", "absolute"),
    "roberta": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "xlm-roberta": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "camembert": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "distilbert": Architecture(build_distilbert, "bidirectional", "absolute"),
}


def build_model(config: dict, weights, device, dtype, int8: bool = False):
    """Our model for config.json's model_type; int8=True quantizes its linear layers' weights."""
    model_type = config.get("model_type")
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise ValueError(f"unsupported architecture model_type={model_type!r}; supported: {', '.join(ARCHITECTURES)}")
    return arch.build(config, weights, device, dtype, int8)
