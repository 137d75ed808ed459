"""Rotary position embeddings: the config's parameters (theta, scaling, per layer type), inverse frequencies,
and the per-token angles of a packed batch. The rotation itself is the op layer's `rotary`."""

from __future__ import annotations

import math

import torch

from .. import ops
from ..ops.reference import packed_positions


def rope_parameters(config: dict) -> dict[str, dict]:
    """RoPE parameters per layer type, from transformers 5's rope_parameters or the older keys."""
    params = config.get("rope_parameters")
    if params is None:
        params = dict(config.get("rope_scaling") or {})
        params.setdefault("rope_type", params.pop("type", "default"))
        params["rope_theta"] = config.get("rope_theta", 10000.0)
        if config.get("rope_local_base_freq") is not None:  # Gemma 3: local layers' own theta
            local = {**params, "rope_type": "default", "rope_theta": config["rope_local_base_freq"]}
            return {"full_attention": params, "sliding_attention": local}
        return {"all": params}
    if "rope_theta" in params or "rope_type" in params:
        return {"all": params}
    return params  # already per layer type


def inverse_frequencies(params: dict, rotary_dim: int, max_positions: int) -> torch.Tensor:
    """RoPE inverse frequencies [rotary_dim / 2] for one rope_parameters dict."""
    theta = float(params.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    kind = params.get("rope_type", "default")
    if kind in ("default", "dynamic"):  # dynamic NTK changes nothing up to the trained length, our maximum
        return inv
    factor = float(params["factor"])
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        original = params.get("original_max_position_embeddings", max_positions)
        low, high = params.get("low_freq_factor", 1.0), params.get("high_freq_factor", 4.0)
        wavelength = 2 * math.pi / inv
        scaled = torch.where(wavelength > original / low, inv / factor, inv)
        smooth = (original / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelength >= original / high) & (wavelength <= original / low)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"unsupported rope_type {kind!r}; supported: default, dynamic, linear, llama3")


class Rotary:
    """Inverse frequencies per layer type ("all" when every layer shares one table)."""

    def __init__(self, frequencies: dict[str, torch.Tensor]):
        # float32, as transformers computes the angles (float64 would differ by more than 1e-4 at long range)
        self.frequencies = {kind: inv.float() for kind, inv in frequencies.items()}

    @classmethod
    def from_config(cls, config: dict, head_dim: int, parameters: dict[str, dict] | None = None) -> Rotary:
        max_positions = config.get("max_position_embeddings", 32768)
        rotary_dim = int(head_dim * (config.get("partial_rotary_factor") or 1.0))
        parameters = parameters if parameters is not None else rope_parameters(config)
        return cls({kind: inverse_frequencies(p, rotary_dim, max_positions) for kind, p in parameters.items()})

    def angles(self, cu_seqlens: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(cos, sin) float32 [T, rotary_dim / 2] per layer type, at each packed token's position in its sequence."""
        positions = packed_positions(cu_seqlens).float()
        out = {}
        for kind, inv in self.frequencies.items():
            angles = positions[:, None] * inv.to(positions.device)[None, :]
            out[kind] = (angles.cos(), angles.sin())
        return out


def rotary_attention(qkv: torch.Tensor, heads: int, cos, sin, cu_seqlens, max_seqlen: int, window=None,
                     key_lengths=None, rows=None) -> torch.Tensor:  # fmt: skip
    """Self-attention over a fused q|k|v projection [T, 3 * hidden] with rotary positions on q and k (the
    encoders' form: as many kv heads as query heads); returns the context [T, hidden]. key_lengths: see ops.attention.
    rows [B]: one token per sequence whose query sees every key (no window): only their context, [B, hidden]."""
    tokens, hidden = qkv.shape[0], qkv.shape[1] // 3
    qkv = qkv.view(tokens, 3, heads, hidden // heads)
    q, k = (ops.rotary(qkv[:, i], cos, sin).contiguous() for i in (0, 1))
    if rows is not None:
        return ops.attention_one_query(q[rows], k, qkv[:, 2], cu_seqlens).view(len(rows), hidden)
    return ops.attention(q, k, qkv[:, 2].contiguous(), cu_seqlens, max_seqlen, window=window,
                         key_lengths=key_lengths).view(tokens, hidden)


def sees_every_key(window, max_seqlen: int, causal: bool = False) -> bool:
    """Whether a layer with this attention window (None: none) hides no key of any sequence from any query: on both
    sides, or (causal) before it, the only keys a causal mask leaves."""
    return window is None or (window[0] >= max_seqlen - 1 and (causal or window[1] >= max_seqlen - 1))
