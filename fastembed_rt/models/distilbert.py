"""DistilBERT: BERT's post-LN encoder without token types, under its own tensor names."""

from __future__ import annotations

from .bert import Encoder, EncoderConfig, EncoderLayer, WeightReader


def build_distilbert(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> Encoder:
    cfg = EncoderConfig(
        hidden_size=config["dim"],
        num_layers=config["n_layers"],
        num_heads=config["n_heads"],
        layer_norm_eps=1e-12,  # fixed in DistilBERT
        activation=config.get("activation", "gelu"),
    )
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype, int8, float_ffn_up)
    H, inner = cfg.hidden_size, config.get("hidden_dim")
    layers = []
    for i in range(cfg.num_layers):
        p = f"transformer.layer.{i}."
        attn = p + "attention."
        qkv, value = w.attention_inputs(attn + "q_lin", attn + "k_lin", attn + "v_lin", H)
        layers.append(
            EncoderLayer(
                qkv=qkv,
                value=value,
                out=w.linear(attn + "out_lin", rows=H, cols=H),
                attn_norm_weight=w(p + "sa_layer_norm.weight", (H,)),
                attn_norm_bias=w(p + "sa_layer_norm.bias", (H,)),
                up=w.linear(p + "ffn.lin1", rows=inner, cols=H, sensitive=w.float_ffn_up),
                down=w.linear(p + "ffn.lin2", rows=H, cols=inner, gelu_input=True),
                ffn_norm_weight=w(p + "output_layer_norm.weight", (H,)),
                ffn_norm_bias=w(p + "output_layer_norm.bias", (H,)),
            )
        )
    return Encoder(
        cfg,
        word=w.table("embeddings.word_embeddings.weight", (config.get("vocab_size"), H)),
        position=w.table("embeddings.position_embeddings.weight", (config.get("max_position_embeddings"), H)),
        token_type=None,
        norm_weight=w("embeddings.LayerNorm.weight", (H,)),
        norm_bias=w("embeddings.LayerNorm.bias", (H,)),
        layers=layers,
    )
