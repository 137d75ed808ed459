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
  static Score reduce(Vec acc, const RowInfo&, int) { return _mm512_reduce_add_ps(acc); }
};

// VNNI multiplies unsigned by signed bytes, so the query is shifted to unsigned (q + 128, an XOR of the
// sign bit) and the excess removed exactly: q.r = (q + 128).r - 128 * sum(r).
struct DotI8 {
  using Elem = int8_t;
  using Score = int32_t;
  using Vec = __m512i;
  static constexpr int64_t kStep = 64;

  struct RowInfo {  // sum(r) of each row of the tile, computed once per row tile
    int32_t sums[kTile];
    RowInfo(const int8_t* const* rows, int64_t dim) {
      const __m512i ones = _mm512_set1_epi8(1);
      for (int j = 0; j < kTile; ++j) {
        __m512i s = _mm512_setzero_si512();
        for (int64_t d = 0; d < dim; d += kStep)
          s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(byte_mask(dim - d), rows[j] + d));
        sums[j] = _mm512_reduce_add_epi32(s);
      }
    }
  };

  static __mmask64 mask(int64_t remaining) { return byte_mask(remaining); }
  static Vec zero() { return _mm512_setzero_si512(); }
  static Vec load_row(__mmask64 m, const int8_t* p) { return _mm512_maskz_loadu_epi8(m, p); }
  static Vec load_query(__mmask64 m, const int8_t* p) {
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm512_dpbusd_epi32(acc, q, r); }
  static Score reduce(Vec acc, const RowInfo& info, int j) { return _mm512_reduce_add_epi32(acc) - 128 * info.sums[j]; }
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
  static Vec accumulate(Vec acc, Vec q, Vec r) { return _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(q, r))); }
  static Score reduce(Vec acc, const RowInfo&, int) { return static_cast<int32_t>(_mm512_reduce_add_epi64(acc)); }
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
      typename Op::Vec acc[kTile][kTile];
      for (auto& row : acc)
        for (auto& a : row) a = Op::zero();
      for (int64_t d = 0; d < dim; d += Op::kStep) {
        const auto m = Op::mask(dim - d);
        typename Op::Vec rv[kTile], qv[kTile];
        for (int j = 0; j < kTile; ++j) rv[j] = Op::load_row(m, R[j] + d);
        for (int i = 0; i < kTile; ++i) qv[i] = Op::load_query(m, Q[i] + d);
        for (int i = 0; i < kTile; ++i)
          for (int j = 0; j < kTile; ++j) acc[i][j] = Op::accumulate(acc[i][j], qv[i], rv[j]);
      }
      for (int i = 0; i < kTile && q0 + i < nq; ++i)
        for (int j = 0; j < kTile && r0 + j < nrows; ++j) out[(q0 + i) * nrows + r0 + j] = Op::reduce(acc[i][j], info, j);
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
