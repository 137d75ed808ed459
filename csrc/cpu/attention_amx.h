// bfloat16 attention on AMX tiles (Intel Xeons from Sapphire Rapids on): both products, Q K^T and P V, as
// tile multiplies (16 x 32 bfloat16 by 32 x 16, float32 sums), the online softmax between them in AVX-512.
// For the plain (sequence, kv head) items of attention_varlen<bf16> with head sizes that are multiples of 32.
#pragma once

#include <cstdint>

#include "amx.h"
#include "attention.h"

namespace fastembed_rt::cpu::kernels {

constexpr int64_t kAmxDimChunk = 32;  // head dimensions per tile row (64 bytes of bfloat16)
constexpr int64_t kAmxKeyBlock = 128;  // keys per softmax block

// Scratch in 32-bit words for a sequence of `len` tokens and head size `dim`.
int64_t amx_scratch_words(int64_t len, int64_t dim);

// One item: all query heads sharing kv head `kv_head` of sequence `seq`; scratch holds amx_scratch_words.
void attend_item_amx(const bf16* q, const bf16* k, const bf16* v, bf16* out, const int32_t* cu_seqlens,
                     const AttentionShape& shape, float scale, bool causal, int64_t seq, int64_t kv_head,
                     uint32_t* scratch);

}  // namespace fastembed_rt::cpu::kernels
