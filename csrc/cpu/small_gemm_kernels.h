// The AVX-512 bodies of small_gemm.h, compiled for that instruction set in small_gemm_avx512.cpp.
#pragma once

#include <cstdint>

#include "small_gemm.h"

namespace fastembed_rt::cpu {

constexpr int64_t kPanel = 16;  // output columns per panel: one 512-bit vector of float32 accumulators

// Output panels [panel_begin, panel_end) of every row. bfloat16 and int8 layers read x as small_linear
// prepared it in `scratch` (bfloat16 rows; unsigned int8 codes then row scales), float32 layers read x itself.
namespace kernels {
void linear_panels(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, Activation act,
                   bool round_output, float* out, int64_t panel_begin, int64_t panel_end);
}  // namespace kernels

}  // namespace fastembed_rt::cpu
