// Peak-throughput loops for ceilings.cpp at the AVX2 level, built for it like the kernels they measure.
// Independent accumulator chains hide each instruction's latency, so only throughput limits them; each step
// reads its own accumulator, so that no product is loop-invariant and hoisted out.
#pragma GCC target("avx2,fma,popcnt")
#include <immintrin.h>

#include "ceilings.h"

namespace fastembed_rt::cpu::kernels {
namespace {

int64_t sum_of_lanes(const __m256i (&acc)[kVectorChainsAvx2]) {
  int64_t sum = 0;
  alignas(32) int32_t lanes[8];
  for (const auto& v : acc) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
    for (int32_t lane : lanes) sum += lane;
  }
  return sum;
}

}  // namespace

// The int8 kernels' step without VNNI on 7-bit operands: unsigned x signed bytes summed in int16 pairs
// (vpmaddubsw), the pairs in int32 (vpmaddwd by ones), then accumulated.
int64_t maddubs_loop_avx2(int64_t iterations) {
  __m256i acc[kVectorChainsAvx2];
  for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kVectorChainsAvx2; ++j)
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[j], b), ones));
  return sum_of_lanes(acc);
}

// The exact step for any int8 values: int16 products summed in pairs (vpmaddwd), then accumulated.
int64_t madd_loop_avx2(int64_t iterations) {
  __m256i acc[kVectorChainsAvx2];
  for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i b = _mm256_set1_epi16(-2);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(acc[j], b));
  return sum_of_lanes(acc);
}

float fma_loop_avx2(int64_t iterations) {
  __m256 acc[kVectorChainsAvx2];
  for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  float sum = 0.0f;
  alignas(32) float lanes[8];
  for (const auto& v : acc) {
    _mm256_store_ps(lanes, v);
    for (float lane : lanes) sum += lane;
  }
  return sum;
}

// Each chain feeds its own count back into the next xor, so nothing can be hoisted out of the loop.
int64_t popcnt_loop_avx2(int64_t iterations) {
  uint64_t acc[kCeilingChains];
  for (int j = 0; j < kCeilingChains; ++j) acc[j] = j * 0x9E3779B97F4A7C15ull;
  const uint64_t key = 0x5851F42D4C957F2Dull;
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kCeilingChains; ++j) acc[j] += static_cast<uint64_t>(_mm_popcnt_u64(acc[j] ^ key));
  int64_t sum = 0;
  for (uint64_t v : acc) sum += static_cast<int64_t>(v);
  return sum;
}

// The vector way without VPOPCNTDQ, as the AVX2 Hamming kernel counts a pair's 256 bits once both sides
// are split into nibbles: two xors, two vpshufb table lookups, two byte adds.
int64_t popcount_lut_loop_avx2(int64_t iterations) {
  __m256i acc[kVectorChainsAvx2];
  for (int j = 0; j < kVectorChainsAvx2; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i lo_key = _mm256_set1_epi8(0x05), hi_key = _mm256_set1_epi8(0x0A);
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kVectorChainsAvx2; ++j) {
      const __m256i lo = _mm256_shuffle_epi8(table, _mm256_xor_si256(acc[j], lo_key));
      const __m256i hi = _mm256_shuffle_epi8(table, _mm256_xor_si256(acc[j], hi_key));
      acc[j] = _mm256_add_epi8(acc[j], _mm256_add_epi8(lo, hi));
    }
  return sum_of_lanes(acc);
}

}  // namespace fastembed_rt::cpu::kernels
