// Element-wise math written as plain C++ so that the compiler vectorizes it for whatever instruction
// set the calling function is cloned for (no libm calls, which would block vectorization).
#pragma once

#include <cstdint>
#include <cstring>

#define FE_INLINE inline __attribute__((always_inline))
#ifdef FASTEMBED_RT_SINGLE_TARGET
// One instruction set, the compiler's -march: CMake builds the kernels this way for x86-64-v3 (AVX2) and
// baseline x86-64 too, so that the C++ tests exercise the fallbacks on an AVX-512 machine.
#define FE_MULTIVERSION
#else
// AVX-512, AVX2 and baseline clones, picked by cpuid when the library loads.
#define FE_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

namespace fastembed_rt::cpu {

// bfloat16 is stored as the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};

FE_INLINE float to_float(float x) { return x; }
FE_INLINE float to_float(bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <typename T>
FE_INLINE T from_float(float x);
template <>
FE_INLINE float from_float<float>(float x) {
  return x;
}
// Round to nearest even, as torch converts float32 to bfloat16 (NaN is not produced by our kernels).
template <>
FE_INLINE bf16 from_float<bf16>(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// 16 float lanes as a GCC vector (the same type as __m512): the compiler lowers its operations to whatever
// the calling function is compiled for (one zmm register, two ymm, or four xmm).
typedef float Float16 __attribute__((vector_size(16 * sizeof(float))));
typedef int32_t Int16 __attribute__((vector_size(16 * sizeof(int32_t))));

FE_INLINE int32_t truncate_to_int(float x) { return static_cast<int32_t>(x); }
FE_INLINE Int16 truncate_to_int(Float16 x) { return __builtin_convertvector(x, Int16); }

// exp(x) for a float or Float16, relative error ~1e-7 for x in [-80, 88]; inputs outside are clamped. The
// floor keeps results and their products with O(1e-2) factors normal: denormal arithmetic is many times slower.
template <typename V>
FE_INLINE V exp_approx(V x) {
  const V low = V{} - 80.0f, high = V{} + 88.0f;
  x = x < low ? low : x;
  x = x > high ? high : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const V n = (x * 1.44269504088896341f + shifter) - shifter;
  const V r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  V p = V{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const auto bits = (truncate_to_int(n) + 127) << 23;  // 2^n
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

FE_INLINE float fast_exp(float x) { return exp_approx(x); }

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7).
FE_INLINE float fast_erf(float x) {
  const float a = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * fast_exp(-a * a);
  return x < 0.0f ? -y : y;
}

FE_INLINE float gelu_erf(float x) { return 0.5f * x * (1.0f + fast_erf(x * 0.70710678118654752f)); }

// tanh(u) = 1 - 2 / (exp(2u) + 1), the form used by gelu_new / gelu_pytorch_tanh.
FE_INLINE float gelu_tanh(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (2.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f));
}

}  // namespace fastembed_rt::cpu
