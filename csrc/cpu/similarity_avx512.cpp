// AVX-512 score blocks (F, BW, VNNI, VPOPCNTDQ). One tile loop serves all three kernels: 4 queries x 4
// rows per tile, so each loaded vector feeds four multiply-adds; tails use masked loads, which read zeros
// past the end. Each kernel is an Op saying how to load, accumulate and reduce.
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

__mmask64 byte_mask(int64_t remaining) { return remaining >= 64 ? ~__mmask64{0} : (__mmask64{1} << remaining) - 1; }

// Sums of 16 accumulators at once, lane i of the result holding the sum of a[i]: three levels of
// unpack/shuffle + add instead of 16 separate horizontal reductions (which would cost as much as the
// dot products themselves on 128-byte codes).
__attribute__((always_inline)) inline __m512i sum16(const __m512i a[16]) {
  __m512i pairs[8], quads[4];
  for (int i = 0; i < 8; ++i)
    pairs[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    quads[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(pairs[2 * i], pairs[2 * i + 1]),
                                _mm512_unpackhi_epi64(pairs[2 * i], pairs[2 * i + 1]));
  const __m512i lo = _mm512_add_epi32(_mm512_shuffle_i32x4(quads[0], quads[1], 0x44), _mm512_shuffle_i32x4(quads[0], quads[1], 0xEE));
  const __m512i hi = _mm512_add_epi32(_mm512_shuffle_i32x4(quads[2], quads[3], 0x44), _mm512_shuffle_i32x4(quads[2], quads[3], 0xEE));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(lo, hi, 0x88), _mm512_shuffle_i32x4(lo, hi, 0xDD));
}

__attribute__((always_inline)) inline __m512 sum16(const __m512 a[16]) {
  __m512 pairs[8], quads[4];
  for (int i = 0; i < 8; ++i)
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(pairs[2 * i]), y = _mm512_castps_pd(pairs[2 * i + 1]);
    quads[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const __m512 lo = _mm512_add_ps(_mm512_shuffle_f32x4(quads[0], quads[1], 0x44), _mm512_shuffle_f32x4(quads[0], quads[1], 0xEE));
  const __m512 hi = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2], quads[3], 0x44), _mm512_shuffle_f32x4(quads[2], quads[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(lo, hi, 0x88), _mm512_shuffle_f32x4(lo, hi, 0xDD));
}

void store(float* p, __m512 v) { _mm512_store_ps(p, v); }
void store(int32_t* p, __m512i v) { _mm512_store_si512(p, v); }

struct NoRowInfo {
  template <typename T>
  NoRowInfo(const T* const*, int64_t) {}
};

struct DotF32 {
  using Elem = float;
  using Score = float;
  using Vec = __m512;
  using RowInfo = NoRowInfo;
  static constexpr int64_t kStep = 16;
  static __mmask16 mask(int64_t remaining) {
    return remaining >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << remaining) - 1);
  }
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec load_row(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static Vec load_query(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm512_fmadd_ps(q, r, acc); }
  static Vec finish(Vec sums, const RowInfo&) { return sums; }
};

// VNNI multiplies unsigned by signed bytes, so the query is shifted to unsigned (q + 128, an XOR of the
// sign bit) and the excess removed exactly: q.r = (q + 128).r - 128 * sum(r).
struct DotI8 {
  using Elem = int8_t;
  using Score = int32_t;
  using Vec = __m512i;
  static constexpr int64_t kStep = 64;

  struct RowInfo {  // 128 * sum(r) for each row of the tile, laid out as the tile's sums are (lane i*4 + j)
    __m512i correction;
    RowInfo(const int8_t* const* rows, int64_t dim) {
      const __m512i ones = _mm512_set1_epi8(1);
      int32_t sums[kTile];
      for (int j = 0; j < kTile; ++j) {
        __m512i s = _mm512_setzero_si512();
        for (int64_t d = 0; d < dim; d += kStep)
          s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(byte_mask(dim - d), rows[j] + d));
        sums[j] = 128 * _mm512_reduce_add_epi32(s);
      }
      correction = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sums)));
    }
  };

  static __mmask64 mask(int64_t remaining) { return byte_mask(remaining); }
  static Vec zero() { return _mm512_setzero_si512(); }
  static Vec load_row(__mmask64 m, const int8_t* p) { return _mm512_maskz_loadu_epi8(m, p); }
  static Vec load_query(__mmask64 m, const int8_t* p) {
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm512_dpbusd_epi32(acc, q, r); }
  static Vec finish(Vec sums, const RowInfo& info) { return _mm512_sub_epi32(sums, info.correction); }
};

struct Hamming {
  using Elem = uint8_t;
  using Score = int32_t;
  using Vec = __m512i;
  using RowInfo = NoRowInfo;
  static constexpr int64_t kStep = 64;
  static __mmask64 mask(int64_t remaining) { return byte_mask(remaining); }
  static Vec zero() { return _mm512_setzero_si512(); }
  static Vec load_row(__mmask64 m, const uint8_t* p) { return _mm512_maskz_loadu_epi8(m, p); }
  static Vec load_query(__mmask64 m, const uint8_t* p) { return _mm512_maskz_loadu_epi8(m, p); }
  // 64-bit counts: their high halves stay zero, so sum16's 32-bit lanes add them up unchanged.
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(q, r))); }
  static Vec finish(Vec sums, const RowInfo&) { return sums; }
};

template <typename Op>
void score_tiles(const typename Op::Elem* q, int64_t nq, const typename Op::Elem* rows, int64_t nrows, int64_t dim,
                 typename Op::Score* out) {
  using Elem = typename Op::Elem;
  for (int64_t r0 = 0; r0 < nrows; r0 += kTile) {
    const Elem* R[kTile];
    tile_pointers(rows, dim, r0, nrows, R);
    const typename Op::RowInfo info(R, dim);
    for (int64_t q0 = 0; q0 < nq; q0 += kTile) {
      const Elem* Q[kTile];
      tile_pointers(q, dim, q0, nq, Q);
      typename Op::Vec acc[kTile * kTile];  // acc[i * 4 + j]: query i against row j
      for (auto& a : acc) a = Op::zero();
      const auto step = [&](int64_t d, auto m) __attribute__((always_inline)) {
        typename Op::Vec rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = Op::load_row(m, R[j] + d);
        for (int i = 0; i < kTile; ++i) qv[i] = Op::load_query(m, Q[i] + d);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j) acc[i * kTile + j] = Op::accumulate(acc[i * kTile + j], qv[i], rv[j]);
      };
      int64_t d = 0;
      for (; d + Op::kStep <= dim; d += Op::kStep) step(d, Op::mask(Op::kStep));  // full chunks, constant mask
      if (d < dim) step(d, Op::mask(dim - d));
      alignas(64) typename Op::Score sums[kTile * kTile];
      store(sums, Op::finish(sum16(acc), info));
      // Query i's four row scores are adjacent in `sums`, as they are in `out`: one 16-byte copy each.
      for (int i = 0; i < kTile && q0 + i < nq; ++i) {
        typename Op::Score* dst = out + (q0 + i) * nrows + r0;
        if (r0 + kTile <= nrows) {
          __builtin_memcpy(dst, sums + i * kTile, sizeof(sums[0]) * kTile);
        } else {
          for (int j = 0; r0 + j < nrows; ++j) dst[j] = sums[i * kTile + j];
        }
      }
    }
  }
}

}  // namespace

void dot_f32_avx512(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  score_tiles<DotF32>(q, nq, rows, nrows, dim, out);
}

void dot_i8_avx512(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  score_tiles<DotI8>(q, nq, rows, nrows, dim, out);
}

void hamming_avx512(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out) {
  score_tiles<Hamming>(q, nq, rows, nrows, nbytes, out);
}

}  // namespace fastembed_rt::cpu::kernels
