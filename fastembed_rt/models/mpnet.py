"""MPNet (all-mpnet-base-v2): BERT's post-LN encoder, with positions offset past padding_idx as in RoBERTa, no
token types, and a learned relative position bias (T5-style log buckets, shared by all layers) added to every
attention score."""

from __future__ import annotations

import math

import torch

from .bert import Encoder, EncoderConfig, EncoderLayer, WeightReader

PADDING_IDX = 1  # fixed in MPNet: positions start at 2


def relative_position_buckets(offsets: torch.Tensor, num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Bucket of each key-minus-query offset: half the buckets per direction, exact up to a quarter of
    num_buckets, logarithmic beyond, capped at max_distance."""
    half = num_buckets // 2
    bucket = (offsets > 0).long() * half  # keys after the query use the upper half
    distance = offsets.abs()
    exact = half // 2
    log_bucket = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    return bucket + torch.where(distance < exact, distance, log_bucket.clamp(max=half - 1))


class MPNetEncoder(Encoder):
    takes_rows = False  # attention_one_query has no relative position bias

    def __init__(self, *args, relative_attention_bias: torch.Tensor, num_buckets: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.relative_attention_bias = relative_attention_bias  # [num_buckets, heads]
        self.num_buckets = num_buckets

    def fused(self):
        return None  # the fused C++ encoder has no relative position bias

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        from .. import ops

        offsets = torch.arange(-(max_seqlen - 1), max_seqlen, device=input_ids.device)
        bias = self.relative_attention_bias[relative_position_buckets(offsets, self.num_buckets)].T.contiguous()  # [H, 2L-1]
        x = ops.embed(self.word_embeddings, self.position_embeddings, None, input_ids, cu_seqlens,
                      self.config.position_offset).to(self.norm_weight.dtype)  # fmt: skip
        x = ops.layer_norm(x, self.norm_weight, self.norm_bias, self.config.layer_norm_eps)
        for layer in self.layers:
            x = layer.forward(x, cu_seqlens, max_seqlen, self.config, relative_bias=bias)
        return x


def build_mpnet(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> MPNetEncoder:
    cfg = EncoderConfig(
        hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
        layer_norm_eps=config.get("layer_norm_eps", 1e-12), activation=config.get("hidden_act", "gelu"),
        position_offset=PADDING_IDX + 1,
    )  # fmt: skip
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype, int8, float_ffn_up)
    H, inner, buckets = cfg.hidden_size, config.get("intermediate_size"), config.get("relative_attention_num_buckets", 32)
    layers = []
    for i in range(cfg.num_layers):
        p = f"encoder.layer.{i}."
        a = p + "attention.attn."
        # Under int8, QKV stays in float here and the output and up projections take 7-bit weights: on 2,000 bench
        # texts (all-mpnet-base-v2, FASTEMBED_RT_ISA=avx2) the min cosine to float32 was 0.9918 (0.9925 with 8-bit
        # weights, which take vpmaddwd on AVX2: the model ran at 0.90x the speed); int8 queries and keys
        # (WeightReader.attention_inputs) took it to 0.9897, under the 0.99 gate.
        layers.append(EncoderLayer(
            qkv=w.linear(a + "q", a + "k", a + "v", rows=H, cols=H, sensitive=True), out=w.linear(a + "o", rows=H, cols=H, seven_bit=True),
            attn_norm_weight=w(p + "attention.LayerNorm.weight", (H,)), attn_norm_bias=w(p + "attention.LayerNorm.bias", (H,)),
            up=w.linear(p + "intermediate.dense", rows=inner, cols=H, seven_bit=True, sensitive=w.float_ffn_up), down=w.linear(p + "output.dense", rows=H, cols=inner, gelu_input=True),
            ffn_norm_weight=w(p + "output.LayerNorm.weight", (H,)), ffn_norm_bias=w(p + "output.LayerNorm.bias", (H,)),
        ))  # fmt: skip
    return MPNetEncoder(
        cfg, w.table("embeddings.word_embeddings.weight", (config.get("vocab_size"), H)),
        w.table("embeddings.position_embeddings.weight", (config.get("max_position_embeddings"), H)), None,
        w("embeddings.LayerNorm.weight", (H,)), w("embeddings.LayerNorm.bias", (H,)), layers,
        relative_attention_bias=w("encoder.relative_attention_bias.weight", (buckets, cfg.num_heads)),
        num_buckets=buckets,
    )  # fmt: skip
