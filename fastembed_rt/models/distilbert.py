"""DistilBERT: BERT's post-LN encoder without token types, under its own tensor names."""

from __future__ import annotations

from .bert import Encoder, EncoderConfig, EncoderLayer, WeightReader


def build_distilbert(config: dict, weights, device, dtype) -> Encoder:
    cfg = EncoderConfig(
        hidden_size=config["dim"],
        num_layers=config["n_layers"],
        num_heads=config["n_heads"],
        layer_norm_eps=1e-12,  # fixed in DistilBERT
        activation=config.get("activation", "gelu"),
    )
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype)
    layers = []
    for i in range(cfg.num_layers):
        p = f"transformer.layer.{i}."
        attn = p + "attention."
        layers.append(
            EncoderLayer(
                qkv_weight=w.cat(attn + "q_lin.weight", attn + "k_lin.weight", attn + "v_lin.weight"),
                qkv_bias=w.cat(attn + "q_lin.bias", attn + "k_lin.bias", attn + "v_lin.bias"),
                out_weight=w(attn + "out_lin.weight"),
                out_bias=w(attn + "out_lin.bias"),
                attn_norm_weight=w(p + "sa_layer_norm.weight"),
                attn_norm_bias=w(p + "sa_layer_norm.bias"),
                up_weight=w(p + "ffn.lin1.weight"),
                up_bias=w(p + "ffn.lin1.bias"),
                down_weight=w(p + "ffn.lin2.weight"),
                down_bias=w(p + "ffn.lin2.bias"),
                ffn_norm_weight=w(p + "output_layer_norm.weight"),
                ffn_norm_bias=w(p + "output_layer_norm.bias"),
            )
        )
    return Encoder(
        cfg,
        word=w("embeddings.word_embeddings.weight"),
        position=w("embeddings.position_embeddings.weight"),
        token_type=None,
        norm_weight=w("embeddings.LayerNorm.weight"),
        norm_bias=w("embeddings.LayerNorm.bias"),
        layers=layers,
    )
