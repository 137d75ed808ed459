"""Decoder LLMs used as embedders, over packed sequences: Llama, Mistral, Qwen2, Qwen3 (Qwen3-Embedding) and
Gemma 3 text (EmbeddingGemma), which differ in a handful of switches read from config.json:

    attention       causal, or bidirectional (Gemma 3's use_bidirectional_attention); grouped-query heads;
                    full or sliding-window per layer (layer_types, sliding_window); q/k RMSNorm (Qwen3, Gemma 3);
                    bias on q/k/v (Qwen2); scale 1/sqrt(head_dim) or query_pre_attn_scalar (Gemma 3)
    positions       RoPE with the config's theta and scaling (default, linear, dynamic, llama3), per layer type
    norms           pre-norm RMSNorm; Gemma's (1 + weight) form and its extra post-attention / post-MLP norms
    MLP             SwiGLU (silu) or GeGLU (gelu_pytorch_tanh)
    embeddings      Gemma scales them by sqrt(hidden_size)

x = x + attn(norm(x)); x = x + mlp(norm(x)); final norm. Pooling is the checkpoint's (last token by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from .bert import WeightReader
from .rotary import Rotary, rope_parameters, sees_every_key

ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh", "gelu": "gelu"}
GEMMA = ("gemma3_text",)


@dataclass
class DecoderConfig:
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    eps: float
    activation: str
    causal: bool
    scale: float
    qk_norm: bool
    gemma: bool
    windows: list  # per layer: None (full attention) or (left, right) for flash-attn's window_size
    rope_layer_types: list  # per layer: the key of its RoPE table


def _layer_types(config: dict, layers: int) -> list[str]:
    if config.get("layer_types"):
        return list(config["layer_types"])
    if config.get("model_type") == "gemma3_text":  # older Gemma 3 configs: every Nth layer global
        n = config.get("sliding_window_pattern", 6)
        return ["full_attention" if (i + 1) % n == 0 else "sliding_attention" for i in range(layers)]
    if config.get("model_type") == "qwen2":
        sliding = config.get("use_sliding_window", False)
        start = config.get("max_window_layers", layers)
        return ["sliding_attention" if sliding and i >= start else "full_attention" for i in range(layers)]
    if config.get("model_type") == "mistral" and config.get("sliding_window"):
        return ["sliding_attention"] * layers
    return ["full_attention"] * layers


def decoder_config(config: dict) -> DecoderConfig:
    model_type = config["model_type"]
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    gemma = model_type in GEMMA
    activation = config.get("hidden_activation") or config.get("hidden_act", "silu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {activation!r}; supported: {', '.join(ACTIVATIONS)}")
    causal = not config.get("use_bidirectional_attention", False)
    layers = config["num_hidden_layers"]
    types = _layer_types(config, layers)
    window = config.get("sliding_window")
    windows = []
    for kind in types:
        if kind == "sliding_attention" and window and causal:
            windows.append((window - 1, 0))  # i - window < j <= i
        elif kind == "sliding_attention" and window:
            windows.append((window // 2, window // 2))  # Gemma 3 bidirectional: |i - j| <= window / 2
        else:
            windows.append(None)
    rope = rope_parameters(config)
    scale = config["query_pre_attn_scalar"] ** -0.5 if gemma and config.get("query_pre_attn_scalar") else head_dim**-0.5
    return DecoderConfig(
        model_type=model_type, hidden_size=hidden, num_layers=layers, num_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads, head_dim=head_dim,
        eps=config.get("rms_norm_eps", 1e-6), activation=ACTIVATIONS[activation], causal=causal, scale=scale,
        qk_norm=model_type in ("qwen3", "gemma3_text"), gemma=gemma,
        windows=windows, rope_layer_types=[t if t in rope else "all" for t in types],
    )  # fmt: skip


@dataclass
class DecoderLayer:
    attn_norm: torch.Tensor
    qkv: ops.Linear
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    out: ops.Linear
    post_attn_norm: torch.Tensor | None  # Gemma
    mlp_norm: torch.Tensor
    gate_up: ops.Linear  # [2 * intermediate, hidden]: gate rows, then up rows
    down: ops.Linear
    post_mlp_norm: torch.Tensor | None  # Gemma


class Decoder:
    """forward(input_ids [T], cu_seqlens [B+1], max_seqlen) -> final hidden states [T, H]."""

    takes_rows = True  # forward(..., rows=) computes the last layer for those rows only

    def __init__(self, config: DecoderConfig, embeddings, layers, final_norm, rotary: Rotary, max_positions: int):
        self.config, self.embeddings, self.layers, self.final_norm = config, embeddings, layers, final_norm
        self.rotary = rotary
        self.max_positions = max_positions

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """rows [B]: the index of one token per sequence, the only hidden states wanted (a yes/no or score head's last
        token): returns [B, H]; where that token's query sees every key (causal: the last token), the last layer is
        run past its keys and values for those rows alone."""
        c = self.config
        x = self.embeddings[input_ids].to(self.final_norm.dtype)
        if c.gemma:
            x = x * torch.tensor(c.hidden_size**0.5, dtype=x.dtype)
        angles = self.rotary.angles(cu_seqlens)
        tokens = x.shape[0]
        q_size, kv_size = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        residual = None
        # the last layer takes the rows alone where their queries see every key of their sequence: any token's
        # (bidirectional) or the last token's (causal), unless a sliding window hides some
        last = len(self.layers) - 1
        alone = (rows is not None and last >= 0 and (not c.causal or torch.equal(rows, cu_seqlens[1:].long() - 1))
                 and sees_every_key(c.windows[last], max_seqlen, c.causal))  # fmt: skip
        for i, (layer, window, kind) in enumerate(zip(self.layers, c.windows, c.rope_layer_types)):
            if residual is None:
                h, residual = ops.rms_norm(x, layer.attn_norm, c.eps, return_sum=True)
            else:
                h, residual = ops.rms_norm(x, layer.attn_norm, c.eps, residual, return_sum=True)
            qkv = layer.qkv(h)
            q = qkv[:, :q_size].reshape(tokens, c.num_heads, c.head_dim)
            k = qkv[:, q_size : q_size + kv_size].reshape(tokens, c.num_kv_heads, c.head_dim)
            v = qkv[:, q_size + kv_size :].reshape(tokens, c.num_kv_heads, c.head_dim).contiguous()
            if layer.q_norm is not None:  # per head, over head_dim
                q = ops.rms_norm(q.reshape(-1, c.head_dim), layer.q_norm, c.eps).view(q.shape)
                k = ops.rms_norm(k.reshape(-1, c.head_dim), layer.k_norm, c.eps).view(k.shape)
            cos, sin = angles[kind]
            q, k = ops.rotary(q, cos, sin).contiguous(), ops.rotary(k, cos, sin).contiguous()
            if alone and i == last:
                context = ops.attention_one_query(q[rows], k, v, cu_seqlens, c.scale)
                residual, tokens, rows = residual[rows], len(rows), None
            else:
                context = ops.attention(q, k, v, cu_seqlens, max_seqlen, c.scale, c.causal, window)
            x = layer.out(context.reshape(tokens, q_size))
            if layer.post_attn_norm is not None:
                x = ops.rms_norm(x, layer.post_attn_norm, c.eps)
            h, residual = ops.rms_norm(x, layer.mlp_norm, c.eps, residual, return_sum=True)
            x = layer.down(ops.glu(layer.gate_up(h), c.activation))
            if layer.post_mlp_norm is not None:
                x = ops.rms_norm(x, layer.post_mlp_norm, c.eps)
        out = ops.rms_norm(x, self.final_norm, c.eps, residual)
        return out if rows is None else out[rows]


def build_decoder(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> Decoder:
    c = decoder_config(config)
    w = WeightReader(weights, "embed_tokens.weight", device, dtype, int8, float_ffn_up)
    qkv_bias = bool(config.get("attention_bias", c.model_type == "qwen2"))
    H, inner, q_rows, kv_rows = c.hidden_size, config.get("intermediate_size"), c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim

    def norm(name, width=H):  # Gemma keeps (weight - 1): its RMSNorm multiplies by (1 + weight), computed in float32
        return (w.raw(name, (width,)).float() + 1.0).to(device, w.dtype) if c.gemma else w(name, (width,))

    def optional_norm(name):
        return norm(name) if w.prefix + name in w.weights else None

    # Under int8 the output, gate/up and down projections take 7-bit weights where the AVX2 kernels need them for
    # vpmaddubsw (ops.Linear): EmbeddingGemma-300M's min cosine to float32 on 400 bench texts under
    # FASTEMBED_RT_ISA=avx2 went from 0.9989 to 0.9976, and the texts took 50.6 s against 60.2 s.
    layers = []
    for i in range(c.num_layers):
        p = f"layers.{i}."
        a = p + "self_attn."
        qkv = w.linear(a + "q_proj", a + "k_proj", a + "v_proj", rows=(q_rows, kv_rows, kv_rows), cols=H, bias=qkv_bias,
                       sensitive=True)  # fmt: skip
        # q/k norms act on the QKV GEMM's output (bfloat16 under int8 where that GEMM stays in bfloat16)
        layers.append(DecoderLayer(
            attn_norm=norm(p + "input_layernorm.weight"),
            qkv=qkv,
            q_norm=norm(a + "q_norm.weight", c.head_dim).to(qkv.activation_dtype) if c.qk_norm else None,
            k_norm=norm(a + "k_norm.weight", c.head_dim).to(qkv.activation_dtype) if c.qk_norm else None,
            out=w.linear(a + "o_proj", rows=H, cols=q_rows, bias=bool(config.get("attention_bias", False)), seven_bit=True),
            post_attn_norm=optional_norm(p + "post_attention_layernorm.weight") if c.gemma else None,
            mlp_norm=norm(p + ("pre_feedforward_layernorm.weight" if c.gemma else "post_attention_layernorm.weight")),
            gate_up=w.linear(p + "mlp.gate_proj", p + "mlp.up_proj", rows=inner, cols=H, bias=bool(config.get("mlp_bias", False)),
                             sensitive=w.float_ffn_up, seven_bit=True),  # fmt: skip
            down=w.linear(p + "mlp.down_proj", rows=H, cols=inner, bias=bool(config.get("mlp_bias", False)), seven_bit=True),
            post_mlp_norm=optional_norm(p + "post_feedforward_layernorm.weight") if c.gemma else None,
        ))  # fmt: skip
    max_positions = config.get("max_position_embeddings", 32768)
    return Decoder(c, w.table("embed_tokens.weight", (config.get("vocab_size"), H)), layers, norm("norm.weight"), Rotary.from_config(config, c.head_dim), max_positions)
