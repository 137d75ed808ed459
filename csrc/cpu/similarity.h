// Exact top-k search fused with the similarity kernels: float32 dot, int8 dot (int32 accumulate) and
// binary Hamming distance. Each thread scans a contiguous slice of the corpus block by block, keeping a
// per-query top-k; the full query x corpus score matrix never exists.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "isa.h"

namespace fastembed_rt::cpu {


// queries [nq, dim], corpus [n, dim], both row-major and contiguous; 1 <= k <= n; the caller checks.
// Results [nq, k], best first; equal scores go to the lower corpus index.
void topk_dot_f32(const float* queries, int64_t nq, const float* corpus, int64_t n, int64_t dim, int64_t k,
                  Isa isa, int num_threads, float* out_scores, int64_t* out_ids);
void topk_dot_i8(const int8_t* queries, int64_t nq, const int8_t* corpus, int64_t n, int64_t dim, int64_t k,
                 Isa isa, int num_threads, int32_t* out_scores, int64_t* out_ids);
// Codes of nbytes bytes; results are distances, smallest first.
void topk_hamming(const uint8_t* queries, int64_t nq, const uint8_t* corpus, int64_t n, int64_t nbytes, int64_t k,
                  Isa isa, int num_threads, int32_t* out_distances, int64_t* out_ids);

}  // namespace fastembed_rt::cpu
