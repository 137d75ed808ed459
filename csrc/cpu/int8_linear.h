// The element-wise halves of an int8 linear layer around its int8 x int8 -> int32 GEMM: dynamic per-row
// (per-token) activation quantization before it, and dequantization + bias + activation after it.
#pragma once

#include <cstdint>

#include "activations.h"

namespace fastembed_rt::cpu {

// Symmetric per-row int8: scales[r] = max|x[r]| / 127, q = clamp(round_half_even(x * (127 / max|x[r]|)), -127, 127);
// an all-zero row gets scale 0 and codes 0. x: [rows, cols] float32 or bfloat16; q: [rows, cols] int8.
template <typename T>
void quantize_rows(const T* x, int64_t rows, int64_t cols, int8_t* q, float* scales, int num_threads);

// out = act(acc * (row_scales[r] * col_scales[c]) + bias[c]): acc [rows, cols] int32; bias [cols] or nullptr.
void dequantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, float* out, int num_threads);

// The two fused: act(acc * (row_scales[r] * col_scales[c]) + bias[c]) quantized per row straight into
// codes and out_scales, as quantize_rows would; the float activations never leave the cache.
// Feeds one int8 GEMM's output into the next (a feed-forward block's up and down projections).
void requantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, int8_t* codes, float* out_scales, int num_threads);

}  // namespace fastembed_rt::cpu
