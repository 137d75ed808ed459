// AVX2 score blocks: 2 queries x 4 rows per tile (16 ymm registers); tails finish in scalar code.
#pragma GCC target("avx2,fma,popcnt")
#include <immintrin.h>

#include "similarity_kernels.h"

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int kQ = 2, kR = 4;

template <typename T, int N>
void tile_pointers(const T* base, int64_t stride, int64_t start, int64_t count, const T* out[N]) {
  for (int i = 0; i < N; ++i) out[i] = base + (start + i < count ? start + i : count - 1) * stride;
}

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
}

}  // namespace

void dot_f32_avx2(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  const int64_t body = dim - dim % 8;
  for (int64_t r0 = 0; r0 < nrows; r0 += kR) {
    const float* R[kR];
    tile_pointers<float, kR>(rows, dim, r0, nrows, R);
    for (int64_t q0 = 0; q0 < nq; q0 += kQ) {
      const float* Q[kQ];
      tile_pointers<float, kQ>(q, dim, q0, nq, Q);
      __m256 acc[kQ][kR];
      for (auto& row : acc)
        for (auto& a : row) a = _mm256_setzero_ps();
      for (int64_t d = 0; d < body; d += 8) {
        __m256 rv[kR];
        for (int j = 0; j < kR; ++j) rv[j] = _mm256_loadu_ps(R[j] + d);
        for (int i = 0; i < kQ; ++i) {
          const __m256 qv = _mm256_loadu_ps(Q[i] + d);
          for (int j = 0; j < kR; ++j) acc[i][j] = _mm256_fmadd_ps(qv, rv[j], acc[i][j]);
        }
      }
      for (int i = 0; i < kQ && q0 + i < nq; ++i)
        for (int j = 0; j < kR && r0 + j < nrows; ++j) {
          float s = hsum(acc[i][j]);
          for (int64_t d = body; d < dim; ++d) s += Q[i][d] * R[j][d];
          out[(q0 + i) * nrows + r0 + j] = s;
        }
    }
  }
}

// int8 products are widened to int16 and summed in pairs into int32 (madd): exact, no saturation.
void dot_i8_avx2(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  const int64_t body = dim - dim % 16;
  for (int64_t r0 = 0; r0 < nrows; r0 += kR) {
    const int8_t* R[kR];
    tile_pointers<int8_t, kR>(rows, dim, r0, nrows, R);
    for (int64_t q0 = 0; q0 < nq; q0 += kQ) {
      const int8_t* Q[kQ];
      tile_pointers<int8_t, kQ>(q, dim, q0, nq, Q);
      __m256i acc[kQ][kR];
      for (auto& row : acc)
        for (auto& a : row) a = _mm256_setzero_si256();
      for (int64_t d = 0; d < body; d += 16) {
        __m256i rv[kR];
        for (int j = 0; j < kR; ++j) rv[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(R[j] + d)));
        for (int i = 0; i < kQ; ++i) {
          const __m256i qv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(Q[i] + d)));
          for (int j = 0; j < kR; ++j) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(qv, rv[j]));
        }
      }
      for (int i = 0; i < kQ && q0 + i < nq; ++i)
        for (int j = 0; j < kR && r0 + j < nrows; ++j) {
          int32_t s = hsum(acc[i][j]);
          for (int64_t d = body; d < dim; ++d) s += int32_t{Q[i][d]} * int32_t{R[j][d]};
          out[(q0 + i) * nrows + r0 + j] = s;
        }
    }
  }
}

// No vector popcount before AVX-512: 64-bit words through the hardware POPCNT instruction.
void hamming_avx2(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out) {
  const int64_t words = nbytes / 8;
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    for (int64_t r = 0; r < nrows; ++r) {
      const uint8_t* row = rows + r * nbytes;
      int64_t acc = 0;
      for (int64_t w = 0; w < words; ++w) {
        unsigned long long a, b;
        __builtin_memcpy(&a, qi + 8 * w, 8);
        __builtin_memcpy(&b, row + 8 * w, 8);
        acc += _mm_popcnt_u64(a ^ b);
      }
      for (int64_t b = 8 * words; b < nbytes; ++b) acc += _mm_popcnt_u32(static_cast<unsigned>(qi[b] ^ row[b]));
      out[i * nrows + r] = static_cast<int32_t>(acc);
    }
  }
}

}  // namespace fastembed_rt::cpu::kernels
