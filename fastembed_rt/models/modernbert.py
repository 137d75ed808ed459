"""ModernBERT over packed sequences: a pre-LayerNorm encoder with rotary positions, GeGLU and no biases,
whose layers alternate global attention and local sliding-window attention (every Nth layer global, each
kind with its own RoPE theta).

    x = LN(embed(ids));  per layer: x = x + Wo(attn(LN(x)))   (layer 0: no LN before attention)
                                    x = x + mlp(LN(x)), mlp = Wo(act(first half of Wi x) * second half)
    final LN
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from .bert import WeightReader
from .decoder import ACTIVATIONS
from .rotary import Rotary, rotary_attention, sees_every_key


@dataclass
class ModernBertConfig:
    hidden_size: int
    num_heads: int
    eps: float
    activation: str
    windows: list  # per layer: None (global) or (left, right)
    rope_kinds: list  # per layer: its RoPE table


@dataclass
class ModernBertLayer:
    attn_norm: tuple | None  # (weight, bias or None); None in layer 0
    qkv: ops.Linear
    out: ops.Linear
    mlp_norm: tuple
    up: ops.Linear  # [2 * intermediate, hidden]: activated half, then gate half
    down: ops.Linear


class ModernBert:
    def __init__(self, config, embeddings, embedding_norm, layers, final_norm, rotary: Rotary, max_positions: int):
        self.config, self.embeddings, self.embedding_norm = config, embeddings, embedding_norm
        self.layers, self.final_norm, self.rotary, self.max_positions = layers, final_norm, rotary, max_positions

    takes_rows = True  # forward(..., rows=) computes the last layer for those rows only

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                key_lengths: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """key_lengths [B]: attention keys are each sequence's first tokens (ColBERT's query expansion). rows [B]: one
        token per sequence, the only hidden states wanted ([B, H]); a last layer without a sliding window computes
        them alone past its keys and values."""
        if rows is not None and key_lengths is not None:
            raise ValueError("rows and key_lengths cannot be combined: a row's query would not see every key")
        c = self.config
        x = ops.layer_norm(self.embeddings[input_ids].to(self.embedding_norm[0].dtype), *self.embedding_norm, c.eps)
        angles = self.rotary.angles(cu_seqlens)
        for i, (layer, window, kind) in enumerate(zip(self.layers, c.windows, c.rope_kinds)):
            alone = rows is not None and i == len(self.layers) - 1 and sees_every_key(window, max_seqlen)
            h = x if layer.attn_norm is None else ops.layer_norm(x, *layer.attn_norm, c.eps)
            context = rotary_attention(layer.qkv(h), c.num_heads, *angles[kind], cu_seqlens, max_seqlen, window, key_lengths,
                                       rows if alone else None)  # fmt: skip
            if alone:
                x, rows = x[rows], None
            x = x + layer.out(context)
            x = x + layer.down(ops.glu(layer.up(ops.layer_norm(x, *layer.mlp_norm, c.eps)), c.activation))
        x = x if rows is None else x[rows]
        return ops.layer_norm(x, *self.final_norm, c.eps)


def build_modernbert(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> ModernBert:
    layers_count = config["num_hidden_layers"]
    every = config.get("global_attn_every_n_layers") or 3
    types = config.get("layer_types") or ["full_attention" if i % every == 0 else "sliding_attention" for i in range(layers_count)]
    half_window = (config.get("local_attention") or 128) // 2  # |i - j| <= local_attention / 2
    parameters = config.get("rope_parameters") or {
        "full_attention": {"rope_type": "default", "rope_theta": config.get("global_rope_theta", 160000.0)},
        "sliding_attention": {"rope_type": "default", "rope_theta": config.get("local_rope_theta") or config.get("global_rope_theta", 160000.0)},
    }  # fmt: skip
    activation = config.get("hidden_activation", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"modernbert: unsupported hidden_activation {activation!r}")
    c = ModernBertConfig(
        hidden_size=config["hidden_size"], num_heads=config["num_attention_heads"], eps=config.get("norm_eps", 1e-5),
        activation=ACTIVATIONS[activation],
        windows=[(half_window, half_window) if t == "sliding_attention" else None for t in types], rope_kinds=types,
    )  # fmt: skip
    w = WeightReader(weights, "embeddings.tok_embeddings.weight", device, dtype, int8, float_ffn_up)
    norm_bias, attn_bias, mlp_bias = config.get("norm_bias", False), config.get("attention_bias", False), config.get("mlp_bias", False)
    H, inner = c.hidden_size, config.get("intermediate_size")

    def norm(name):
        return w(name + ".weight", (H,)), w(name + ".bias", (H,)) if norm_bias else None

    layers = []
    for i in range(layers_count):
        p = f"layers.{i}."
        layers.append(ModernBertLayer(
            attn_norm=None if i == 0 else norm(p + "attn_norm"),
            qkv=w.linear(p + "attn.Wqkv", rows=3 * H, cols=H, bias=attn_bias, sensitive=True),
            out=w.linear(p + "attn.Wo", rows=H, cols=H, bias=attn_bias), mlp_norm=norm(p + "mlp_norm"),
            up=w.linear(p + "mlp.Wi", rows=inner and 2 * inner, cols=H, bias=mlp_bias, sensitive=w.float_ffn_up),  # GLU: gate, up
            down=w.linear(p + "mlp.Wo", rows=H, cols=inner, bias=mlp_bias),
        ))  # fmt: skip
    rotary = Rotary.from_config(config, c.hidden_size // c.num_heads, parameters)
    return ModernBert(c, w.table("embeddings.tok_embeddings.weight", (config.get("vocab_size"), H)), norm("embeddings.norm"), layers, norm("final_norm"), rotary,
                      config.get("max_position_embeddings", 8192))  # fmt: skip
