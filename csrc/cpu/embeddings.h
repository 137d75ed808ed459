// Token embeddings of packed sequences: word + position (+ token type), one row per token.
#pragma once

#include <cstdint>

#include "vector_math.h"

namespace fastembed_rt::cpu {

// out[t] = word[ids[t]] + position[position_offset + (t - start of t's sequence)] + token_type, summed in
// float32. word [vocab, hidden], position [positions, hidden], token_type [hidden] or nullptr, out [tokens,
// hidden]. The caller checks ids against the vocabulary and sequence lengths against the position table.
template <typename T>
void embed_tokens(const T* word, const T* position, const T* token_type, int64_t hidden, const int64_t* ids,
                  const int32_t* cu_seqlens, int64_t num_seqs, int64_t position_offset, T* out, int num_threads);

}  // namespace fastembed_rt::cpu
