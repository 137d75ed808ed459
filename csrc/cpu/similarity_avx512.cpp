// AVX-512 score blocks (F, BW, VNNI, VPOPCNTDQ): 4 queries x 4 rows per tile, so each loaded vector
// feeds four multiply-adds; tails use masked loads, which read zeros past the end.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vpopcntdq,popcnt")
#include <immintrin.h>

#include "similarity_kernels.h"

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int kTile = 4;

// Pointers to rows base + i*stride for i in [start, start+4), repeating the last valid row past `count`
// so that a partial tile computes (and discards) duplicates instead of reading out of bounds.
template <typename T>
void tile_pointers(const T* base, int64_t stride, int64_t start, int64_t count, const T* out[kTile]) {
  for (int i = 0; i < kTile; ++i) out[i] = base + (start + i < count ? start + i : count - 1) * stride;
}

__mmask64 tail_mask(int64_t remaining) { return remaining >= 64 ? ~__mmask64{0} : (__mmask64{1} << remaining) - 1; }

template <typename Score, typename Acc, typename Reduce>
void store_tile(Acc acc[kTile][kTile], int64_t q0, int64_t nq, int64_t r0, int64_t nrows, Score* out, Reduce reduce) {
  for (int i = 0; i < kTile && q0 + i < nq; ++i)
    for (int j = 0; j < kTile && r0 + j < nrows; ++j) out[(q0 + i) * nrows + r0 + j] = reduce(acc[i][j], j);
}

}  // namespace

void dot_f32_avx512(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (dim % 16)) - 1);
  for (int64_t r0 = 0; r0 < nrows; r0 += kTile) {
    const float* R[kTile];
    tile_pointers(rows, dim, r0, nrows, R);
    for (int64_t q0 = 0; q0 < nq; q0 += kTile) {
      const float* Q[kTile];
      tile_pointers(q, dim, q0, nq, Q);
      __m512 acc[kTile][kTile];
      for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_ps();
      int64_t d = 0;
      for (; d + 16 <= dim; d += 16) {
        __m512 rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = _mm512_loadu_ps(R[j] + d);
        for (int i = 0; i < kTile; ++i) qv[i] = _mm512_loadu_ps(Q[i] + d);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j) acc[i][j] = _mm512_fmadd_ps(qv[i], rv[j], acc[i][j]);
      }
      if (d < dim) {
        __m512 rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = _mm512_maskz_loadu_ps(tail, R[j] + d);
        for (int i = 0; i < kTile; ++i) qv[i] = _mm512_maskz_loadu_ps(tail, Q[i] + d);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j) acc[i][j] = _mm512_fmadd_ps(qv[i], rv[j], acc[i][j]);
      }
      store_tile(acc, q0, nq, r0, nrows, out, [](__m512 v, int) { return _mm512_reduce_add_ps(v); });
    }
  }
}

// VNNI multiplies unsigned by signed bytes, so the query is shifted to unsigned (q + 128, an XOR of the
// sign bit) and the excess removed exactly: q.r = (q + 128).r - 128 * sum(r).
void dot_i8_avx512(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t r0 = 0; r0 < nrows; r0 += kTile) {
    const int8_t* R[kTile];
    tile_pointers(rows, dim, r0, nrows, R);
    int32_t row_sums[kTile];
    for (int j = 0; j < kTile; ++j) {
      __m512i s = _mm512_setzero_si512();
      for (int64_t d = 0; d < dim; d += 64)
        s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(tail_mask(dim - d), R[j] + d));
      row_sums[j] = _mm512_reduce_add_epi32(s);
    }
    for (int64_t q0 = 0; q0 < nq; q0 += kTile) {
      const int8_t* Q[kTile];
      tile_pointers(q, dim, q0, nq, Q);
      __m512i acc[kTile][kTile];
      for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_si512();
      for (int64_t d = 0; d < dim; d += 64) {
        const __mmask64 m = tail_mask(dim - d);
        __m512i rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = _mm512_maskz_loadu_epi8(m, R[j] + d);
        for (int i = 0; i < kTile; ++i) qv[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, Q[i] + d), sign);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], qv[i], rv[j]);
      }
      store_tile(acc, q0, nq, r0, nrows, out,
                 [&](__m512i v, int j) { return _mm512_reduce_add_epi32(v) - 128 * row_sums[j]; });
    }
  }
}

void hamming_avx512(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out) {
  for (int64_t r0 = 0; r0 < nrows; r0 += kTile) {
    const uint8_t* R[kTile];
    tile_pointers(rows, nbytes, r0, nrows, R);
    for (int64_t q0 = 0; q0 < nq; q0 += kTile) {
      const uint8_t* Q[kTile];
      tile_pointers(q, nbytes, q0, nq, Q);
      __m512i acc[kTile][kTile];
      for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_si512();
      for (int64_t b = 0; b < nbytes; b += 64) {
        const __mmask64 m = tail_mask(nbytes - b);
        __m512i rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = _mm512_maskz_loadu_epi8(m, R[j] + b);
        for (int i = 0; i < kTile; ++i) qv[i] = _mm512_maskz_loadu_epi8(m, Q[i] + b);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j)
            acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(qv[i], rv[j])));
      }
      store_tile(acc, q0, nq, r0, nrows, out,
                 [](__m512i v, int) { return static_cast<int32_t>(_mm512_reduce_add_epi64(v)); });
    }
  }
}

}  // namespace fastembed_rt::cpu::kernels
