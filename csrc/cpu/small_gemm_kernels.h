// The AVX-512 bodies of small_gemm.h, compiled for that instruction set in small_gemm_avx512.cpp.
#pragma once

#include <cstdint>

#include "small_gemm.h"

namespace fastembed_rt::cpu {

constexpr int64_t kPanel = 16;  // output columns per panel: one 512-bit vector of float32 accumulators

// prepare_rows converts x into what the kind's dot products read (bfloat16 pairs; unsigned int8 codes and
// row scales) in `scratch`, at least m * (k_padded + 16) * 4 bytes; float32 reads x itself. linear_panels
// then computes output panels [panel_begin, panel_end) of every row.
namespace kernels {
void prepare_rows(const PackedLinear& w, const float* x, int64_t m, uint8_t* scratch);
void linear_panels(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, Activation act,
                   bool round_output, float* out, int64_t panel_begin, int64_t panel_end);
}  // namespace kernels

}  // namespace fastembed_rt::cpu
