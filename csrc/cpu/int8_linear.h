// The element-wise halves of an int8 linear layer around its int8 x int8 -> int32 GEMM: dynamic per-row
// (per-token) activation quantization before it, and dequantization + bias + activation after it.
#pragma once

#include <cstdint>

#include "activations.h"

namespace fastembed_rt::cpu {

// Per-row int8 codes q [rows, cols] and scales [rows] of x [rows, cols] (float32 or bfloat16), x ~ q * scale.
// Symmetric (zeros == nullptr): scale = max|x[r]| / 127, q = clamp(round_half_even(x / scale), -127, 127).
// Asymmetric 7-bit (zeros [rows]): the row's range [min(x, 0), max(x, 0)] in 127 steps, scale = range / 127,
// zero = round_half_even(-min / scale), u = clamp(round_half_even(x / scale) + zero, 0, 127), q = u - zero (so
// q * scale is x whatever the zero point; the panel kernels add it back for unsigned codes in [0, 127]). For a
// GELU output (almost all of it >= 0) its 127 steps span about what 8-bit symmetric codes spend 254 on.
// Either way an all-zero row gets scale 0 and codes 0; "/ scale" is a multiply by 127 / (max|x| or range).
template <typename T>
void quantize_rows(const T* x, int64_t rows, int64_t cols, int8_t* q, float* scales, int32_t* zeros, int num_threads);

// out = act(acc * (row_scales[r] * col_scales[c]) + bias[c]): acc [rows, cols] int32; bias [cols] or nullptr.
void dequantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, float* out, int num_threads);

// The two fused: act(acc * (row_scales[r] * col_scales[c]) + bias[c]) quantized per row straight into
// codes and out_scales (and zeros: asymmetric), as quantize_rows would; the float activations never leave the
// cache. Feeds one int8 GEMM's output into the next (a feed-forward block's up and down projections).
void requantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, int8_t* codes, float* out_scales, int32_t* zeros,
                     int num_threads);

}  // namespace fastembed_rt::cpu
