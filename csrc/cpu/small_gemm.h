// Linear layers for a few rows (single queries, small batches), where a GEMM library's per-call
// overhead would dominate: weights packed once into 16-column panels, each panel streamed once per
// call while up to 8 rows accumulate in registers. AVX-512 only (FMA; VNNI for int8; BF16 for bf16):
// callers check small_gemm_supported() and use the op-by-op path elsewhere.
#pragma once

#include <cstdint>
#include <vector>

#include "activations.h"

namespace fastembed_rt::cpu {

enum class WeightKind : int32_t { kFloat32 = 0, kBFloat16 = 1, kInt8 = 2 };

bool small_gemm_supported(WeightKind kind);

// A linear layer's weights [n, k] in panel layout. float32: [n/16][k][16]; bfloat16: [n/16][k/2][16][2];
// int8: [n/16][k/4][16][4] with per-column scales and column sums (for the unsigned-activation trick).
struct PackedLinear {
  WeightKind kind = WeightKind::kFloat32;
  int64_t n = 0, k = 0, k_padded = 0, panels = 0;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<int8_t> i8;
  std::vector<int32_t> column_sums;
  std::vector<float> column_scales;  // int8 only
  std::vector<float> bias;           // [n] float32, empty when absent
};

// weight: [n, k] row-major in the kind's storage (float, bfloat16 bits, int8 codes); scales: [n] for int8.
PackedLinear pack_linear(WeightKind kind, const void* weight, int64_t n, int64_t k, const float* column_scales,
                         const float* bias);

// out [m, n] float32 = act(x [m, k] float32 . W^T + bias). int8 layers quantize each row of x symmetrically
// (as quantize_rows) and dequantize with row scale x column scale; bfloat16 layers round x to bfloat16
// and, with round_output, their result too (as a bfloat16 GEMM's output would be). `scratch` is reused;
// the output panels are split across `num_threads` workers of the persistent pool.
void small_linear(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads);

}  // namespace fastembed_rt::cpu
