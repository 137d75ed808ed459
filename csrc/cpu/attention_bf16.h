// bfloat16 attention with AVX512_BF16 dot products (two multiply-adds per lane per instruction), for the
// (sequence, kv head) items of attention_varlen<bf16> on CPUs that have them and even head sizes.
#pragma once

#include <cstdint>

#include "attention.h"

namespace fastembed_rt::cpu::kernels {

constexpr int64_t kBf16Rows = 16;  // queries per tile: the 16 float lanes
constexpr int64_t kBf16Keys = 16;  // keys per block

// Scratch sizes in 32-bit words for a sequence of `len` tokens: keys [padded][dim/2] (bf16 pairs), values
// transposed into key pairs [dim][padded/2], one tile of queries [dim/2][16], its accumulators [dim][16].
inline int64_t bf16_padded(int64_t len) { return (len + kBf16Keys - 1) / kBf16Keys * kBf16Keys; }
inline int64_t bf16_scratch_words(int64_t len, int64_t dim) {
  return 2 * bf16_padded(len) * (dim / 2) + (dim / 2) * kBf16Rows + dim * kBf16Rows;
}

// One item: all query heads sharing kv head `kv_head` of sequence `seq`; scratch holds bf16_scratch_words.
void attend_item_bf16_dot(const bf16* q, const bf16* k, const bf16* v, bf16* out, const int32_t* cu_seqlens,
                          const AttentionShape& shape, float scale, bool causal, int64_t seq, int64_t kv_head,
                          uint32_t* scratch);

bool bf16_dot_supported();

}  // namespace fastembed_rt::cpu::kernels
