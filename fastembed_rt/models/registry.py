"""model_type (config.json) → the builder of our packed-sequence model for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .bert import build_bert
from .decoder import build_decoder
from .distilbert import build_distilbert
from .modernbert import build_modernbert
from .mpnet import build_mpnet
from .rotary_encoder import build_rotary_encoder


@dataclass(frozen=True)
class Architecture:
    build: Callable
    attention: str
    positions: str
    pooling: str = "mean"  # when the checkpoint has no sentence-transformers Pooling module


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(build_bert, "bidirectional", "absolute"),
    "roberta": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "xlm-roberta": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "camembert": Architecture(build_bert, "bidirectional", "absolute, offset past padding_idx"),
    "distilbert": Architecture(build_distilbert, "bidirectional", "absolute"),
    "mpnet": Architecture(build_mpnet, "bidirectional, relative position bias", "absolute + relative buckets"),
    "modernbert": Architecture(build_modernbert, "bidirectional, global and sliding-window layers",
                               "rotary (global and local theta)"),
    "gte": Architecture(build_rotary_encoder, "bidirectional", "rotary"),
    "nomic_bert": Architecture(build_rotary_encoder, "bidirectional", "rotary"),
    "jina_embeddings_v3": Architecture(build_rotary_encoder, "bidirectional", "rotary (LoRA adapters not applied)"),
    "llama": Architecture(build_decoder, "causal, grouped-query", "rotary (theta, scaling)", "lasttoken"),
    "mistral": Architecture(build_decoder, "causal, grouped-query, sliding window", "rotary", "lasttoken"),
    "qwen2": Architecture(build_decoder, "causal, grouped-query, optional sliding window", "rotary", "lasttoken"),
    "qwen3": Architecture(build_decoder, "causal, grouped-query, q/k RMSNorm", "rotary", "lasttoken"),
    "gemma3_text": Architecture(build_decoder, "causal or bidirectional, sliding/global layers, q/k RMSNorm",
                                "rotary (local and global theta)", "lasttoken"),
}


def architecture(config: dict) -> Architecture:
    """The Architecture for config.json's model_type, or an error naming the supported ones."""
    model_type = config.get("model_type")
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        remote = config.get("auto_map")
        hint = (f"; its config points at remote code ({', '.join(sorted(set(map(str, remote.values()))))}), which "
                "fastembed_rt never runs: it needs its own forward for that architecture") if isinstance(remote, dict) else ""  # fmt: skip
        raise ValueError(f"unsupported architecture model_type={model_type!r}{hint}; supported: {', '.join(ARCHITECTURES)}")
    return arch


def build_model(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False):
    """Our model for config.json's model_type; int8=True quantizes its linear layers' weights (but for the
    feed-forward input projections with float_ffn_up)."""
    arch = architecture(config)
    try:
        return arch.build(config, weights, device, dtype, int8, float_ffn_up)
    except KeyError as e:
        raise ValueError(f"config.json has no {e.args[0]!r}, which model_type {config.get('model_type')!r} needs") from None
