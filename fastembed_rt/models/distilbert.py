"""DistilBERT: BERT's post-LN encoder without token types, under its own tensor names."""

from __future__ import annotations

from .bert import Encoder, EncoderConfig, EncoderLayer, WeightReader


def build_distilbert(config: dict, weights, device, dtype, int8: bool = False) -> Encoder:
    cfg = EncoderConfig(
        hidden_size=config["dim"],
        num_layers=config["n_layers"],
        num_heads=config["n_heads"],
        layer_norm_eps=1e-12,  # fixed in DistilBERT
        activation=config.get("activation", "gelu"),
    )
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype, int8)
    layers = []
    for i in range(cfg.num_layers):
        p = f"transformer.layer.{i}."
        attn = p + "attention."
        layers.append(
            EncoderLayer(
                qkv=w.linear(attn + "q_lin", attn + "k_lin", attn + "v_lin", sensitive=True),
                out=w.linear(attn + "out_lin"),
                attn_norm_weight=w(p + "sa_layer_norm.weight"),
                attn_norm_bias=w(p + "sa_layer_norm.bias"),
                up=w.linear(p + "ffn.lin1"),
                down=w.linear(p + "ffn.lin2"),
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
