// A whole post-LayerNorm BERT-family encoder for a few tokens in one C++ call: embeddings + LayerNorm,
// then per layer QKV -> varlen attention -> output projection -> residual + LayerNorm -> up + GELU ->
// down -> residual + LayerNorm. No Python between layers, and the activation buffers are kept and reused
// across calls. Built for single queries and small batches (small_gemm.h): the linear layers split their
// columns across a persistent worker pool, everything else runs on the calling thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "activations.h"
#include "small_gemm.h"
#include "vector_math.h"

namespace fastembed_rt::cpu {

struct FusedEncoderLayer {
  // Shared with the op path's layers (the same panels serve both, so a model holds its weights once). qkv is
  // [3 * hidden, hidden], or [2 * hidden, hidden] (queries and keys) with the values in `value` (float32 weights).
  std::shared_ptr<const PackedLinear> qkv, out, up, down, value;
  std::vector<float> attn_norm_weight, attn_norm_bias, ffn_norm_weight, ffn_norm_bias;
};

struct EncoderEmbeddings {
  // Tables in float32, or in bfloat16 (a bfloat16 model's, read in place: summed in bfloat16 as the op path
  // does, then widened). Owned by the caller for the encoder's lifetime.
  bool bfloat16;
  const void* word;        // [vocab, hidden]
  const void* position;    // [max_positions, hidden]
  const void* token_type;  // [hidden] (row 0 of the token-type table) or nullptr
  std::vector<float> norm_weight, norm_bias;
  int64_t position_offset;  // RoBERTa: positions start at padding_idx + 1
};

class FusedEncoder {
 public:
  FusedEncoder(int64_t hidden, int64_t heads, float eps, Activation activation, EncoderEmbeddings embeddings);
  void add_layer(FusedEncoderLayer layer);
  // ids [tokens]; cu_seqlens [num_seqs + 1]; out [tokens, hidden]. The caller checks ids and lengths.
  // key_lengths [num_seqs] or null: attention keys are each sequence's first tokens (see AttentionExtras).
  void forward(const int64_t* ids, const int32_t* cu_seqlens, int64_t num_seqs, float* out, int num_threads,
               const int32_t* key_lengths = nullptr);

 private:
  int64_t hidden_, heads_;
  float eps_;
  Activation activation_;
  EncoderEmbeddings embeddings_;
  std::vector<FusedEncoderLayer> layers_;
  std::mutex mutex_;  // the buffers below serve one call at a time
  std::vector<float> qkv_, values_, context_, projected_, ffn_;
  std::vector<bf16> embedded_;
  std::vector<uint8_t> scratch_;
};

}  // namespace fastembed_rt::cpu
