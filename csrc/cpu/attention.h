// Softmax attention over packed variable-length sequences (flash-attn's varlen layout): each sequence's keys
// in blocks of up to 512 with an online softmax across blocks; no padding, and no score matrix in memory
// beyond one block's scores for 8 queries.
#pragma once

#include <cstdint>

#include "vector_math.h"

namespace fastembed_rt::cpu {

struct AttentionShape {
  int64_t num_seqs;
  int64_t num_heads;     // query heads
  int64_t num_kv_heads;  // divides num_heads (grouped-query attention when smaller)
  int64_t head_dim;
  // Elements between consecutive tokens; heads are head_dim apart, and a head's values are contiguous.
  int64_t q_token_stride, k_token_stride, v_token_stride;
};

// What some models add on top of plain (causal) attention, all within each sequence:
// a sliding window (ModernBERT, Mistral, Gemma 3): key j is seen by query i only if i - left <= j <= i + right
// (flash-attn's window_size; -1: no limit on that side); a relative position bias (MPNet): relative_bias
// [num_heads][2 * bias_radius + 1] adds relative_bias[h][bias_radius + j - i] to each (pre-softmax) score;
// key lengths [num_seqs] (ColBERT's query expansion): only the first key_lengths[s] tokens of sequence s are
// keys, while all of its tokens are queries (1 <= key_lengths[s] <= its length, unless it is empty).
struct AttentionExtras {
  int64_t window_left = -1, window_right = -1;
  const float* relative_bias = nullptr;
  int64_t bias_radius = 0;  // at least the longest sequence minus one
  const int32_t* key_lengths = nullptr;
};

// q: [T, num_heads, head_dim], k and v: [T, num_kv_heads, head_dim] (strided as above);
// out: [T, num_heads, head_dim] contiguous. Sequence s is tokens cu_seqlens[s]..cu_seqlens[s+1].
// causal: token i attends to tokens <= i of its own sequence. Computed in float32; the caller checks sizes.
template <typename T>
void attention_varlen(const T* q, const T* k, const T* v, T* out, const int32_t* cu_seqlens,
                      const AttentionShape& shape, float scale, bool causal, int num_threads,
                      const AttentionExtras& extras = {});

}  // namespace fastembed_rt::cpu
