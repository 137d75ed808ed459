// Pooling of packed hidden states into one vector per sequence, optionally L2-normalized.
#pragma once

#include <cstdint>

namespace fastembed_rt::cpu {

// Values match the order of fastembed_rt.ops.POOL_MODES.
enum class PoolMode : int32_t {
  kCls = 0,
  kMean = 1,
  kMax = 2,
  kMeanSqrtLen = 3,
  kWeightedMean = 4,
  kLastToken = 5,
};

// hidden:      [total_tokens, hidden_size] float32 or bfloat16 (read in place, pooled in float32), rows
//              `row_stride` elements apart.
// cu_seqlens:  [num_seqs + 1] offsets of each sequence's tokens, non-decreasing, from 0 to total_tokens.
// skip:        [num_seqs] leading tokens of each sequence left out of pooling (a prompt), or nullptr.
// out:         [num_seqs, hidden_size] float32, rows `out_stride` floats apart.
// Semantics follow sentence-transformers' Pooling: weightedmean weights a token by its 1-based
// position in the whole sequence; an all-skipped sequence pools to zeros (max: -inf; cls: token 0).
// The caller validates every size and offset.
template <typename T>
void pool_packed(const T* hidden, int64_t row_stride, int64_t hidden_size, const int32_t* cu_seqlens,
                 int64_t num_seqs, const int32_t* skip, PoolMode mode, bool normalize, float* out,
                 int64_t out_stride, int num_threads);

}  // namespace fastembed_rt::cpu
