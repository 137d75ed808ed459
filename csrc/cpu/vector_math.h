// Element-wise math written as plain C++ so that the compiler vectorizes it for whatever instruction
// set the calling function is cloned for (no libm calls, which would block vectorization).
#pragma once

#include <cstdint>
#include <cstring>

#include "isa.h"

#define FE_INLINE inline __attribute__((always_inline))
#define FE_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define FE_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))

// Three builds of one kernel entry point, for AVX-512, AVX2 and baseline x86-64, and `name` itself, which
// runs the build active_isa() picks (not cpuid alone: FASTEMBED_RT_ISA caps it). The body is an expression
// over `args`, inlined into each build (so everything it calls must be FE_INLINE); kVectorBytes is the
// build's vector width, for bodies that size their tiles by it.
#define FE_ISA_DISPATCH(ret, name, params, args, ...)                                          \
  FE_TARGET_AVX512 ret name##_avx512 params {                                                 \
    [[maybe_unused]] constexpr int kVectorBytes = 64;                                         \
    return __VA_ARGS__;                                                                       \
  }                                                                                           \
  FE_TARGET_AVX2 ret name##_avx2 params {                                                     \
    [[maybe_unused]] constexpr int kVectorBytes = 32;                                         \
    return __VA_ARGS__;                                                                       \
  }                                                                                           \
  ret name##_scalar params {                                                                  \
    [[maybe_unused]] constexpr int kVectorBytes = 16;                                         \
    return __VA_ARGS__;                                                                       \
  }                                                                                           \
  ret name params {                                                                           \
    switch (::fastembed_rt::cpu::active_isa()) {                                              \
      case ::fastembed_rt::cpu::Isa::kAvx512: return name##_avx512 args;                      \
      case ::fastembed_rt::cpu::Isa::kAvx2: return name##_avx2 args;                          \
      default: return name##_scalar args;                                                     \
    }                                                                                         \
  }

namespace fastembed_rt::cpu {

// bfloat16 is stored as the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};

// Two consecutive bfloat16 values as one 32-bit word, the first in the low half: the pair layout of the bfloat16
// dot-product instructions (vdpbf16ps, AMX's tdpbf16ps).
FE_INLINE uint32_t bf16_pair(const bf16* p) {
  uint32_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

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

// N float lanes as a GCC vector: the compiler lowers its operations to whatever the calling function is
// compiled for. Kernels size N to the build's registers (16 for a zmm, 8 for a ymm, 4 for an xmm): a vector
// wider than the registers is split into several, which multiplies register pressure and spills.
template <int N>
struct Lanes {
  typedef float type __attribute__((vector_size(N * sizeof(float))));
  typedef int32_t int_type __attribute__((vector_size(N * sizeof(int32_t))));
};
typedef Lanes<16>::type Float16;

FE_INLINE int32_t truncate_to_int(float x) { return static_cast<int32_t>(x); }
template <typename V>
FE_INLINE auto truncate_to_int(V x) {
  return __builtin_convertvector(x, typename Lanes<sizeof(V) / sizeof(float)>::int_type);
}

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

// 2^y for y <= 0 (a softmax weight, y = (score - max) * log2(e)), relative error <= 2e-7 for y >= -115; below, the
// result stays at 2^-115 (normal, as exp_approx's floor). 12 instructions per vector against exp_approx's 19: no
// upper clamp, the shifter's integer 127 + round(y) is the power of two's exponent field, and 2^f for f in
// [-0.5, 0.5] is a degree-5 fit of relative error (ours: Lawson-weighted least squares, 1.9e-7 in float32).
template <typename V>
FE_INLINE V exp2_nonpositive(V y) {
  y = y < -115.0f ? V{} - 115.0f : y;
  const float shifter = 12582912.0f + 127.0f;  // 1.5 * 2^23 + 127: adding it rounds y and adds the exponent bias
  const V t = y + shifter;
  const V f = y - (t - shifter);
  V p = V{} + 1.3264724e-3f;
  p = p * f + 9.6715130e-3f;
  p = p * f + 5.5507336e-2f;
  p = p * f + 2.4022242e-1f;
  p = p * f + 6.9314700e-1f;
  p = p * f + 1.0f;
  auto bits = truncate_to_int(V{});  // t's low bits are 127 + round(y): shifted into the exponent field, 2^round(y)
  std::memcpy(&bits, &t, sizeof bits);
  bits <<= 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erf(x) as x P(x^2) / Q(x^2), a rational least-squares fit to erf on [0, 3.95] (ours; absolute error <= 4e-7
// evaluated in float32), computed on |x| and clamped to 1, so both tails are exactly +-1 and GELU's negative
// tail exactly 0. No exp: GELU runs 1.5x as fast as with Abramowitz & Stegun 7.1.26's exp and division.
FE_INLINE float fast_erf(float x) {
  const float limit = 3.95f;  // the fit reaches 1.0f here
  float a = x < 0.0f ? -x : x;
  a = a < limit ? a : limit;
  const float s = a * a;
  float p = 2.030817996e-06f;
  p = p * s + 2.874883357e-04f;
  p = p * s + 3.876331029e-03f;
  p = p * s + 5.308438092e-02f;
  p = p * s + 1.929731667e-01f;
  p = p * s + 1.128378987e+00f;
  float q = 3.803070285e-05f;
  q = q * s + 1.189743052e-03f;
  q = q * s + 1.518837828e-02f;
  q = q * s + 1.151676625e-01f;
  q = q * s + 5.043496490e-01f;
  q = q * s + 1.0f;
  float y = a * p / q;
  y = y < 1.0f ? y : 1.0f;
  return x < 0.0f ? -y : y;
}

FE_INLINE float gelu_erf(float x) { return 0.5f * x * (1.0f + fast_erf(x * 0.70710678118654752f)); }

// tanh(u) = 1 - 2 / (exp(2u) + 1), the form used by gelu_new / gelu_pytorch_tanh.
FE_INLINE float gelu_tanh(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (2.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f));
}

}  // namespace fastembed_rt::cpu
