// Score blocks, one set per instruction set: scores[q * nrows + r] for every query q against rows
// [0, nrows) of a contiguous block. Compiled in separate files, each for its own ISA, so that no code
// built for AVX-512 is ever shared with (or run on) a machine that lacks it.
#pragma once

#include <cstdint>

namespace fastembed_rt::cpu::kernels {

#define FASTEMBED_DECLARE_SCORE_BLOCKS(isa)                                                                     \
  void dot_f32_##isa(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out);    \
  void dot_i8_##isa(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out); \
  void hamming_##isa(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out);

FASTEMBED_DECLARE_SCORE_BLOCKS(scalar)
FASTEMBED_DECLARE_SCORE_BLOCKS(avx2)
FASTEMBED_DECLARE_SCORE_BLOCKS(avx512)

#undef FASTEMBED_DECLARE_SCORE_BLOCKS

}  // namespace fastembed_rt::cpu::kernels
