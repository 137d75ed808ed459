#include "fused_encoder.h"

#include <cmath>
#include <utility>

#include "attention.h"
#include "embeddings.h"
#include "norms.h"
#include "parallel.h"

namespace fastembed_rt::cpu {

FusedEncoder::FusedEncoder(int64_t hidden, int64_t heads, float eps, Activation activation,
                           EncoderEmbeddings embeddings)
    : hidden_(hidden), heads_(heads), eps_(eps), activation_(activation), embeddings_(std::move(embeddings)) {}

void FusedEncoder::add_layer(FusedEncoderLayer layer) { layers_.push_back(std::move(layer)); }

void FusedEncoder::forward(const int64_t* ids, const int32_t* cu_seqlens, int64_t num_seqs, float* x, int num_threads,
                           const int32_t* key_lengths) {
  std::lock_guard<std::mutex> lock(mutex_);
  const WorkerPool::Hold hold;  // 24 GEMMs in a row: keep the workers awake between them
  const int64_t tokens = cu_seqlens[num_seqs], h = hidden_;
  if (tokens == 0) return;
  const EncoderEmbeddings& e = embeddings_;
  if (e.bfloat16) {
    embedded_.resize(tokens * h);
    embed_tokens<bf16>(static_cast<const bf16*>(e.word), static_cast<const bf16*>(e.position),
                       static_cast<const bf16*>(e.token_type), h, ids, cu_seqlens, num_seqs, e.position_offset,
                       embedded_.data(), 1);
    for (int64_t i = 0; i < tokens * h; ++i) x[i] = to_float(embedded_[i]);
  } else {
    embed_tokens<float>(static_cast<const float*>(e.word), static_cast<const float*>(e.position),
                        static_cast<const float*>(e.token_type), h, ids, cu_seqlens, num_seqs, e.position_offset, x, 1);
  }
  norm_rows<float>(x, nullptr, embeddings_.norm_weight.data(), embeddings_.norm_bias.data(), x, nullptr, tokens, h,
                   eps_, NormKind::kLayerNorm, 1);
  const int64_t head_dim = h / heads_;
  AttentionExtras extras;
  extras.key_lengths = key_lengths;
  for (const FusedEncoderLayer& layer : layers_) {
    const PackedLinear &qkv = *layer.qkv, &out = *layer.out, &up = *layer.up, &down = *layer.down;
    qkv_.resize(tokens * qkv.n);
    context_.resize(tokens * h);
    projected_.resize(tokens * h);
    ffn_.resize(tokens * up.n);
    // A bfloat16 QKV projection rounds its output to bfloat16, as the op-by-op path's oneDNN GEMM does.
    small_linear(qkv, x, tokens, Activation::kNone, qkv.kind == WeightKind::kBFloat16, qkv_.data(), scratch_, num_threads);
    const float* values = qkv_.data() + 2 * h;
    int64_t values_stride = qkv.n;
    if (layer.value) {
      values_.resize(tokens * h);
      small_linear(*layer.value, x, tokens, Activation::kNone, false, values_.data(), scratch_, num_threads);
      values = values_.data();
      values_stride = h;
    }
    const AttentionShape shape{num_seqs, heads_, heads_, head_dim, qkv.n, qkv.n, values_stride};
    attention_varlen<float>(qkv_.data(), qkv_.data() + h, values, context_.data(), cu_seqlens, shape,
                            1.0f / std::sqrt(static_cast<float>(head_dim)), false, 1, extras);
    if (qkv.kind == WeightKind::kBFloat16) {  // attention on bfloat16 inputs writes bfloat16
      for (float& v : context_) v = to_float(from_float<bf16>(v));
    }
    small_linear(out, context_.data(), tokens, Activation::kNone, false, projected_.data(), scratch_, num_threads);
    norm_rows<float>(projected_.data(), x, layer.attn_norm_weight.data(), layer.attn_norm_bias.data(), x, nullptr,
                     tokens, h, eps_, NormKind::kLayerNorm, 1);
    small_linear(up, x, tokens, activation_, false, ffn_.data(), scratch_, num_threads);
    small_linear(down, ffn_.data(), tokens, Activation::kNone, false, projected_.data(), scratch_, num_threads);
    norm_rows<float>(projected_.data(), x, layer.ffn_norm_weight.data(), layer.ffn_norm_bias.data(), x, nullptr,
                     tokens, h, eps_, NormKind::kLayerNorm, 1);
  }
}

}  // namespace fastembed_rt::cpu
