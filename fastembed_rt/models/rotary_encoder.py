"""Post-LayerNorm encoders with rotary positions: GTE "new" (gte), NomicBERT (nomic_bert) and the XLM-R
backbone of Jina embeddings v3 (jina_embeddings_v3, without its LoRA adapters).

    x = LN(word + token_type[0]);  per layer: x = LN(x + attn(x)); x = LN(x + mlp(x))

attention is bidirectional with RoPE on q and k; the MLP is GLU (GTE: GeGLU, NomicBERT: SwiGLU) or plain
(Jina v3: fc1 -> GELU -> fc2). Tensor names are those of the checkpoints on the Hub, which transformers also
writes (it renames them to its own classes' only in memory): fused Wqkv / qkv_proj, up_gate_proj, fc11 / fc12.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from .bert import WeightReader, add_token_types, token_type_rows
from .decoder import ACTIVATIONS
from .rotary import Rotary, rotary_attention


@dataclass
class RotaryEncoderConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    eps: float
    activation: str
    gated: bool


@dataclass
class RotaryEncoderLayer:
    qkv: ops.Linear
    out: ops.Linear
    attn_norm: tuple[torch.Tensor, torch.Tensor]
    up: ops.Linear  # gated: gate rows, then up rows
    down: ops.Linear
    mlp_norm: tuple[torch.Tensor, torch.Tensor]


class RotaryEncoder:
    def __init__(self, config, embeddings, token_type, norm, layers, rotary: Rotary, max_positions: int, token_type_delta=None):
        self.config, self.embeddings, self.token_type, self.norm = config, embeddings, token_type, norm
        self.layers, self.rotary, self.max_positions = layers, rotary, max_positions
        self.token_type_delta = token_type_delta  # as bert.Encoder's

    takes_rows = True  # forward(..., rows=) computes the last layer for those rows only

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                token_types: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """rows [B]: one token per sequence, the only hidden states wanted ([B, H]): the last layer computes them alone
        past its keys and values."""
        c = self.config
        x = self.embeddings[input_ids].to(self.norm[0].dtype)
        if self.token_type is not None:
            x = x + self.token_type
        x = add_token_types(x, token_types, self.token_type_delta)
        x = ops.layer_norm(x, *self.norm, c.eps)
        cos, sin = self.rotary.angles(cu_seqlens)["all"]
        for i, layer in enumerate(self.layers):
            alone = rows if i == len(self.layers) - 1 else None
            context = rotary_attention(layer.qkv(x), c.num_heads, cos, sin, cu_seqlens, max_seqlen, rows=alone)
            x = x if alone is None else x[alone]
            x = ops.layer_norm(layer.out(context), *layer.attn_norm, c.eps, residual=x)
            hidden = ops.glu(layer.up(x), c.activation) if c.gated else layer.up(x, c.activation)
            x = ops.layer_norm(layer.down(hidden), *layer.mlp_norm, c.eps, residual=x)
        return x if rows is None or self.layers else x[rows]


# Checkpoint tensor names per model_type: (layer prefix, qkv, out, attention norm, MLP in, MLP out, MLP norm,
# embedding norm). "MLP in" is GTE's up_gate_proj (up rows, then gate rows), NomicBERT's (gate, up) pair, or
# Jina's plain fc1.
NAMES = {
    "gte": ("encoder.layer.{}.", "attention.qkv_proj", "attention.o_proj", "attn_ln", ("mlp.up_gate_proj",),
            "mlp.down_proj", "mlp_ln", "embeddings.LayerNorm"),
    "nomic_bert": ("encoder.layers.{}.", "attn.Wqkv", "attn.out_proj", "norm1", ("mlp.fc12", "mlp.fc11"), "mlp.fc2",
                   "norm2", "emb_ln"),
    "jina_embeddings_v3": ("encoder.layers.{}.", "mixer.Wqkv", "mixer.out_proj", "norm1", ("mlp.fc1",), "mlp.fc2",
                           "norm2", "emb_ln"),
}  # fmt: skip


def _get(config: dict, *keys, default=None):
    """The first of several config keys present (transformers' names, then the original remote code's)."""
    return next((config[k] for k in keys if config.get(k) is not None), default)


def build_rotary_encoder(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> RotaryEncoder:
    model_type = config["model_type"]
    activation = _get(config, "hidden_act", "activation_function", default="gelu")
    activation = {"swiglu": "silu", "geglu": "gelu"}.get(activation, activation)
    gated = model_type in ("gte", "nomic_bert")
    if ACTIVATIONS.get(activation) is None or (not gated and ACTIVATIONS[activation] == "silu"):
        raise ValueError(f"{model_type}: unsupported hidden_act {activation!r}")
    c = RotaryEncoderConfig(
        hidden_size=_get(config, "hidden_size", "n_embd"), num_layers=_get(config, "num_hidden_layers", "n_layer"),
        num_heads=_get(config, "num_attention_heads", "n_head"),
        eps=_get(config, "layer_norm_eps", "layer_norm_epsilon", default=1e-12), activation=ACTIVATIONS[activation],
        gated=gated,
    )  # fmt: skip
    layer_prefix, qkv_name, out_name, attn_norm, mlp_in, mlp_out, mlp_norm, emb_norm = NAMES[model_type]
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype, int8, float_ffn_up)
    bias = model_type != "nomic_bert"
    H, inner = c.hidden_size, _get(config, "intermediate_size", "n_inner")

    def norm(name):
        return w(name + ".weight", (H,)), w(name + ".bias", (H,))

    layers = []
    for i in range(c.num_layers):
        p = layer_prefix.format(i)
        if model_type == "gte":  # up_gate_proj holds up rows, then gate rows: reorder to (gate, up)
            up, gate = w(p + mlp_in[0] + ".weight", (inner and 2 * inner, H)).chunk(2, dim=0)
            mlp = w.as_linear(torch.cat([gate, up]).contiguous(), sensitive=w.float_ffn_up)
        else:
            mlp = w.linear(*(p + n for n in mlp_in), rows=inner, cols=H, bias=bias and not gated, sensitive=w.float_ffn_up)
        layers.append(RotaryEncoderLayer(
            qkv=w.linear(p + qkv_name, rows=3 * H, cols=H, bias=bias, sensitive=True),
            out=w.linear(p + out_name, rows=H, cols=H, bias=bias), attn_norm=norm(p + attn_norm), up=mlp,
            down=w.linear(p + mlp_out, rows=H, cols=inner, bias=bias), mlp_norm=norm(p + mlp_norm),
        ))  # fmt: skip
    token_type_name = "embeddings.token_type_embeddings.weight"
    types = _get(config, "type_vocab_size")
    token_type, token_type_delta = token_type_rows(w, token_type_name, types, H) if w.prefix + token_type_name in w.weights else (None, None)
    theta = _get(config, "rope_theta", "rotary_emb_base")
    parameters = None if config.get("rope_parameters") or theta is None else {"all": {"rope_type": "default", "rope_theta": theta}}
    rotary = Rotary.from_config(config, c.hidden_size // c.num_heads, parameters)
    vocab = _get(config, "vocab_size")
    return RotaryEncoder(c, w.table("embeddings.word_embeddings.weight", (vocab, H)), token_type, norm(emb_norm), layers, rotary,
                         _get(config, "max_position_embeddings", "n_positions", default=8192), token_type_delta)  # fmt: skip
