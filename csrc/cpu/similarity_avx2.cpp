// AVX2 score blocks. One tile loop (2 queries x 4 rows: 16 ymm registers) serves the float32 and int8 dot
// products, with scalar tails; Hamming uses the hardware POPCNT on 64-bit words.
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

struct DotF32 {
  using Elem = float;
  using Score = float;
  using Vec = __m256;
  static constexpr int64_t kStep = 8;
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm256_fmadd_ps(q, r, acc); }
  static Score product(float a, float b) { return a * b; }
  static Score reduce(Vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

// int8 products are widened to int16 and summed in pairs into int32 (madd): exact, no saturation.
struct DotI8 {
  using Elem = int8_t;
  using Score = int32_t;
  using Vec = __m256i;
  static constexpr int64_t kStep = 16;
  static Vec zero() { return _mm256_setzero_si256(); }
  static Vec load(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm256_add_epi32(acc, _mm256_madd_epi16(q, r)); }
  static Score product(int8_t a, int8_t b) { return int32_t{a} * int32_t{b}; }
  static Score reduce(Vec v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
  }
};

template <typename Op>
void score_tiles(const typename Op::Elem* q, int64_t nq, const typename Op::Elem* rows, int64_t nrows, int64_t dim,
                 typename Op::Score* out) {
  using Elem = typename Op::Elem;
  const int64_t body = dim - dim % Op::kStep;
  for (int64_t r0 = 0; r0 < nrows; r0 += kR) {
    const Elem* R[kR];
    tile_pointers<Elem, kR>(rows, dim, r0, nrows, R);
    for (int64_t q0 = 0; q0 < nq; q0 += kQ) {
      const Elem* Q[kQ];
      tile_pointers<Elem, kQ>(q, dim, q0, nq, Q);
      typename Op::Vec acc[kQ][kR];
      for (auto& row : acc)
        for (auto& a : row) a = Op::zero();
      for (int64_t d = 0; d < body; d += Op::kStep) {
        typename Op::Vec rv[kR];
        for (int j = 0; j < kR; ++j) rv[j] = Op::load(R[j] + d);
        for (int i = 0; i < kQ; ++i) {
          const typename Op::Vec qv = Op::load(Q[i] + d);
          for (int j = 0; j < kR; ++j) acc[i][j] = Op::accumulate(acc[i][j], qv, rv[j]);
        }
      }
      for (int i = 0; i < kQ && q0 + i < nq; ++i)
        for (int j = 0; j < kR && r0 + j < nrows; ++j) {
          typename Op::Score s = Op::reduce(acc[i][j]);
          for (int64_t d = body; d < dim; ++d) s += Op::product(Q[i][d], R[j][d]);
          out[(q0 + i) * nrows + r0 + j] = s;
        }
    }
  }
}

}  // namespace

void dot_f32_avx2(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  score_tiles<DotF32>(q, nq, rows, nrows, dim, out);
}

void dot_i8_avx2(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  score_tiles<DotI8>(q, nq, rows, nrows, dim, out);
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
