// Peak-throughput loops for ceilings.cpp, built for AVX-512 like the kernels they measure. kCeilingChains
// independent accumulator chains hide each instruction's latency, so only throughput limits them.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vpopcntdq,popcnt")
#include <immintrin.h>

#include "ceilings.h"

namespace fastembed_rt::cpu::kernels {

int64_t vnni_loop_avx512(int64_t iterations) {
  __m512i acc[kCeilingChains];
  for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  int64_t sum = 0;
  for (const auto& v : acc) sum += _mm512_reduce_add_epi32(v);
  return sum;
}

int64_t madd_loop_avx512(int64_t iterations) {
  __m512i acc[kCeilingChains];
  for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i b = _mm512_set1_epi16(-2);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_add_epi32(acc[j], _mm512_madd_epi16(acc[j], b));
  int64_t sum = 0;
  for (const auto& v : acc) sum += _mm512_reduce_add_epi32(v);
  return sum;
}

float fma_loop_avx512(int64_t iterations) {
  __m512 acc[kCeilingChains];
  for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  float sum = 0.0f;
  for (const auto& v : acc) sum += _mm512_reduce_add_ps(v);
  return sum;
}

// Each chain feeds its own count back into the next xor, so nothing can be hoisted out of the loop.
int64_t hamming_loop_avx512(int64_t iterations) {
  __m512i acc[kCeilingChains];
  for (int j = 0; j < kCeilingChains; ++j) acc[j] = _mm512_set1_epi64(j * 0x9E3779B97F4A7C15ll);
  const __m512i key = _mm512_set1_epi64(0x5851F42D4C957F2Dll);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kCeilingChains; ++j)
      acc[j] = _mm512_add_epi64(acc[j], _mm512_popcnt_epi64(_mm512_xor_si512(acc[j], key)));
  int64_t sum = 0;
  for (const auto& v : acc) sum += _mm512_reduce_add_epi64(v);
  return sum;
}

}  // namespace fastembed_rt::cpu::kernels
