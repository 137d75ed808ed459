// Residual add fused with LayerNorm or RMSNorm, row by row, computed in float32 whatever the storage type.
#pragma once

#include <cstdint>

#include "vector_math.h"

namespace fastembed_rt::cpu {

enum class NormKind : int32_t { kLayerNorm = 0, kRmsNorm = 1 };

// x, residual (or nullptr), out, sum_out (or nullptr): [rows, cols] contiguous; weight, bias (or nullptr): [cols].
// s = x + residual; out = norm(s) * weight + bias; sum_out = s (pre-norm models carry it as the next residual).
// LayerNorm: (s - mean) / sqrt(var + eps); RMSNorm: s / sqrt(mean(s^2) + eps). The caller checks sizes.
template <typename T>
void norm_rows(const T* x, const T* residual, const T* weight, const T* bias, T* out, T* sum_out, int64_t rows,
               int64_t cols, float eps, NormKind kind, int num_threads);

}  // namespace fastembed_rt::cpu
