// Bias add fused with the activation that follows a linear layer.
#pragma once

#include <cstdint>

#include "vector_math.h"

namespace fastembed_rt::cpu {

enum class Activation : int32_t { kNone = 0, kGeluErf = 1, kGeluTanh = 2 };

FE_INLINE float activate(float x, Activation act) {
  switch (act) {
    case Activation::kGeluErf:
      return gelu_erf(x);
    case Activation::kGeluTanh:
      return gelu_tanh(x);
    default:
      return x;
  }
}

// out = act(x + bias): x, out [rows, cols] contiguous (out may be x); bias [cols] or nullptr.
template <typename T>
void bias_activation(const T* x, const T* bias, T* out, int64_t rows, int64_t cols, Activation act, int num_threads);

}  // namespace fastembed_rt::cpu
