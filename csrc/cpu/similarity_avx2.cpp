// AVX2 score blocks. One tile loop serves the dot products: 4 queries x 2 rows (3 for float32, which has the
// registers), so each loaded row vector feeds four queries, and the accumulators reduce eight at a time in one
// horizontal-add tree; each is an Op saying how to load and accumulate. Hamming distances have a loop of their
// own (8 queries x 1 row, byte counters). Queries are copied once per block, zero-padded to whole vectors and in
// the form the inner loop takes; a row's partial last vector is read from a zero-padded copy (AVX2 has no masked
// byte loads).
#pragma GCC target("avx2,fma,popcnt")
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "similarity_kernels.h"

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int kQ = 4;

// Pointers to base + i*stride for i in [start, start + N), repeating the last valid one past `count`, so that
// a partial tile computes (and discards) duplicates instead of reading out of bounds.
template <typename T, int N>
void tile_pointers(const T* base, int64_t stride, int64_t start, int64_t count, const T* out[N]) {
  for (int i = 0; i < N; ++i) out[i] = base + (start + i < count ? start + i : count - 1) * stride;
}

// Lane i of the result is the sum of a[i]'s lanes: one tree of horizontal adds for all eight.
__attribute__((always_inline)) inline __m256i sum8(const __m256i a[8]) {
  const __m256i q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
  const __m256i q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

__attribute__((always_inline)) inline __m256 sum8(const __m256 a[8]) {
  const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

void store(float* p, __m256 v) { _mm256_store_ps(p, v); }
void store(int32_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }

// out[p] = the sum of a[p]'s lanes, eight accumulators per reduction tree (zeros fill the last).
template <typename Op, int N>
__attribute__((always_inline)) inline void store_sums(typename Op::Score* out, const typename Op::Vec (&a)[N]) {
  for (int c = 0; c < N; c += 8) {
    typename Op::Vec chunk[8];
    for (int i = 0; i < 8; ++i) chunk[i] = c + i < N ? a[c + i] : Op::zero();
    store(out + c, sum8(chunk));
  }
}

__m256i load_bytes(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Every row's last partial step (the elements after `full` whole steps of kStep), zero-padded, kStep apart: read
// by each query tile, as AVX2 has no masked byte loads. Kept per thread between calls; nullptr when rows end on a
// whole step.
template <int64_t kStep, typename Elem>
const Elem* row_tails(const Elem* rows, int64_t nrows, int64_t dim) {
  const int64_t full = dim / kStep, rest = dim % kStep;
  if (rest == 0) return nullptr;
  thread_local std::vector<Elem> storage;  // reached once per call: each thread_local access costs a call
  std::vector<Elem>& tails = storage;
  tails.assign(nrows * kStep, Elem{0});
  for (int64_t r = 0; r < nrows; ++r) std::memcpy(&tails[r * kStep], rows + r * dim + full * kStep, rest * sizeof(Elem));
  return tails.data();
}

// Ops. kStep: row elements per vector step. Query: the element type queries are prepared as, by prepare().

// Queries as the multiply wants their elements: a plain conversion.
template <typename RowElem, typename QueryElem>
struct ConvertedQueries {
  using Elem = RowElem;
  using Query = QueryElem;
  static void prepare(const Elem* src, int64_t dim, Query* dst) {
    for (int64_t d = 0; d < dim; ++d) dst[d] = static_cast<Query>(src[d]);
  }
};

struct DotF32 : ConvertedQueries<float, float> {
  using Score = float;
  using Vec = __m256;
  using RowVec = __m256;
  static constexpr int64_t kStep = 8;
  static constexpr int kRows = 3;
  static Vec zero() { return _mm256_setzero_ps(); }
  static RowVec load_row(const float* p) { return _mm256_loadu_ps(p); }
  static Vec load_query(const float* p) { return _mm256_loadu_ps(p); }
  static Vec accumulate(Vec acc, Vec q, RowVec r) { return _mm256_fmadd_ps(q, r, acc); }
};

// Exact for any int8 values: rows sign-extended to int16, queries prepared as int16, products summed in
// pairs into int32 (vpmaddwd), which cannot overflow.
struct DotI8Madd : ConvertedQueries<int8_t, int16_t> {
  using Score = int32_t;
  using Vec = __m256i;
  using RowVec = __m256i;
  static constexpr int64_t kStep = 16;
  static constexpr int kRows = 2;
  static Vec zero() { return _mm256_setzero_si256(); }
  static RowVec load_row(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static Vec load_query(const int16_t* p) { return load_bytes(p); }
  static Vec accumulate(Vec acc, Vec q, RowVec r) { return _mm256_add_epi32(acc, _mm256_madd_epi16(q, r)); }
};

// Twice the elements per multiply, exact when no query value is -128 (the caller checks): q.r = |r| .
// (sign(r) * q), unsigned by signed bytes summed in int16 pairs (vpmaddubsw). |r| <= 128 and
// |sign(r) * q| <= 127, so a pair is at most 2 * 128 * 127 = 32512 in magnitude and never saturates;
// vpmaddwd by ones then sums the pairs into int32. The row's signs are read as a memory operand, which
// leaves registers for the accumulators. On Zen 4: 121 against DotI8Madd's 107 GMAC/s on 2 threads.
struct DotI8Maddubs : ConvertedQueries<int8_t, int8_t> {
  using Score = int32_t;
  using Vec = __m256i;
  struct RowVec {
    __m256i magnitude;
    const int8_t* sign;
  };
  static constexpr int64_t kStep = 32;
  static constexpr int kRows = 2;
  static Vec zero() { return _mm256_setzero_si256(); }
  static RowVec load_row(const int8_t* p) { return {_mm256_abs_epi8(load_bytes(p)), p}; }
  static Vec load_query(const int8_t* p) { return load_bytes(p); }
  static Vec accumulate(Vec acc, Vec q, RowVec r) {
    const __m256i pairs = _mm256_maddubs_epi16(r.magnitude, _mm256_sign_epi8(q, load_bytes(r.sign)));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

// Hamming distances, a tile of 8 queries against one row at a time. Bits are counted a nibble at a time by table
// lookup (vpshufb) into byte counters, which reach at most 8 * 31 = 248 before vpsadbw widens them. The nibbles
// of q ^ r are those of q xor those of r, so both sides are split into low and high nibbles before they meet
// (queries once per call, each row step once per tile): a pair then costs two xors, two lookups and two adds per
// 32 bytes, and the eight accumulators, the row's nibbles and the table all stay in registers. A tile's
// prepared queries are interleaved step by step, so one pointer with constant offsets reaches all eight.
namespace hamming {

constexpr int64_t kStep = 32;        // bytes per vector step
constexpr int kQueries = 8;          // queries per tile
constexpr int64_t kGroupSteps = 31;  // steps before the byte counters must be widened
constexpr int64_t kTileStep = kQueries * 2 * kStep;  // one step of a tile's prepared queries

__attribute__((always_inline)) inline void split(__m256i v, __m256i& lo, __m256i& hi) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  lo = _mm256_and_si256(v, nibble);
  hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
}

// Lane i: the sum of a[i]'s bytes. vpsadbw sums each 8 bytes into a 64-bit lane (< 2^11), two accumulators
// share those lanes (one shifted to the high half), and two unpack-and-add steps and a cross-half add finish.
__attribute__((always_inline)) inline __m256i totals(const __m256i (&a)[kQueries]) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i pair[kQueries / 2];  // dwords [a0 b0 a1 b1 | a2 b2 a3 b3] for accumulators a = 2i and b = 2i + 1
  for (int i = 0; i < kQueries / 2; ++i) {
    pair[i] = _mm256_or_si256(_mm256_sad_epu8(a[2 * i], zero), _mm256_slli_epi64(_mm256_sad_epu8(a[2 * i + 1], zero), 32));
  }
  // [t0 t1 t2 t3 | t0 t1 t2 t3]: each half holds its half's partial totals of four accumulators
  const __m256i q0 = _mm256_add_epi32(_mm256_unpacklo_epi64(pair[0], pair[1]), _mm256_unpackhi_epi64(pair[0], pair[1]));
  const __m256i q1 = _mm256_add_epi32(_mm256_unpacklo_epi64(pair[2], pair[3]), _mm256_unpackhi_epi64(pair[2], pair[3]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

// The byte counts of one row's steps [first, last) against a tile's prepared queries Q, added into acc (steps
// from `full` on read `tail`, the row's zero-padded last step).
__attribute__((always_inline)) inline void count_steps(const uint8_t* Q, const uint8_t* row, const uint8_t* tail,
                                                       int64_t full, int64_t first, int64_t last,
                                                       __m256i (&acc)[kQueries]) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
#pragma GCC unroll 8
  for (int64_t s = first; s < last; ++s) {
    __m256i lo, hi;
    split(load_bytes(s < full ? row + s * kStep : tail), lo, hi);
    const uint8_t* q = Q + s * kTileStep;
#pragma GCC unroll 8
    for (int i = 0; i < kQueries; ++i) {
      const __m256i count_lo = _mm256_shuffle_epi8(table, _mm256_xor_si256(lo, load_bytes(q + 2 * i * kStep)));
      const __m256i count_hi = _mm256_shuffle_epi8(table, _mm256_xor_si256(hi, load_bytes(q + (2 * i + 1) * kStep)));
      acc[i] = _mm256_add_epi8(acc[i], _mm256_add_epi8(count_lo, count_hi));
    }
  }
}

// The eight distances of one row (`steps` steps) against a tile's prepared queries Q. kSteps > 0: exactly that
// many steps, a compile-time count the loop unrolls (the common short codes); 0: any number, in groups.
template <int kSteps>
__attribute__((always_inline)) inline __m256i row_distances(const uint8_t* Q, const uint8_t* row, const uint8_t* tail,
                                                            int64_t full, int64_t steps) {
  __m256i acc[kQueries];
  if (kSteps > 0) {
    for (auto& a : acc) a = _mm256_setzero_si256();
    count_steps(Q, row, tail, full, 0, kSteps, acc);
    return totals(acc);
  }
  __m256i total = _mm256_setzero_si256();
  for (int64_t first = 0; first < steps; first += kGroupSteps) {
    for (auto& a : acc) a = _mm256_setzero_si256();
    count_steps(Q, row, tail, full, first, std::min(steps, first + kGroupSteps), acc);
    total = _mm256_add_epi32(total, totals(acc));
  }
  return total;
}

// rows[j] (j < 8: eight rows' distances to a tile's eight queries) transposed, so that lane j of the result's
// vector i is rows[j]'s lane i: each query's distances to the eight rows, for one store.
__attribute__((always_inline)) inline void transpose8(const __m256i (&rows)[8], __m256i (&by_query)[8]) {
  __m256i a[8], b[8];
  for (int j = 0; j < 8; j += 2) {
    a[j] = _mm256_unpacklo_epi32(rows[j], rows[j + 1]);
    a[j + 1] = _mm256_unpackhi_epi32(rows[j], rows[j + 1]);
  }
  for (int j = 0; j < 8; j += 4) {
    for (int h = 0; h < 2; ++h) {
      b[j + 2 * h] = _mm256_unpacklo_epi64(a[j + h], a[j + h + 2]);
      b[j + 2 * h + 1] = _mm256_unpackhi_epi64(a[j + h], a[j + h + 2]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    by_query[i] = _mm256_permute2x128_si256(b[i], b[i + 4], 0x20);
    by_query[i + 4] = _mm256_permute2x128_si256(b[i], b[i + 4], 0x31);
  }
}

// Distances of rows [0, nrows) to one tile of queries, into dst[i * nrows + r] for its first `count` queries:
// eight rows at a time transposed into one store per query, the last rows one at a time.
template <int kSteps>
void tile_distances(const uint8_t* Q, int64_t count, const uint8_t* rows, int64_t nrows, int64_t nbytes,
                    const uint8_t* tails, int64_t full, int64_t steps, int32_t* dst) {
  auto distances = [&](int64_t r) {
    return row_distances<kSteps>(Q, rows + r * nbytes, tails != nullptr ? tails + r * kStep : nullptr, full, steps);
  };
  int64_t r = 0;
  for (; r + 8 <= nrows; r += 8) {
    __m256i block[8], by_query[8];
    for (int j = 0; j < 8; ++j) block[j] = distances(r + j);
    transpose8(block, by_query);
    for (int64_t i = 0; i < count; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i * nrows + r), by_query[i]);
  }
  for (; r < nrows; ++r) {
    alignas(32) int32_t lanes[kQueries];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), distances(r));
    for (int64_t i = 0; i < count; ++i) dst[i * nrows + r] = lanes[i];
  }
}

}  // namespace hamming

// One step of a tile: kR row vectors, then each query's vector against all of them.
template <typename Op>
__attribute__((always_inline)) inline void tile_step(typename Op::Vec (&acc)[kQ * Op::kRows],
                                                     const typename Op::Query* const* Q, int64_t d,
                                                     const typename Op::Elem* const* row) {
  constexpr int kR = Op::kRows;
  typename Op::RowVec rv[kR];
  for (int j = 0; j < kR; ++j) rv[j] = Op::load_row(row[j]);
  for (int i = 0; i < kQ; ++i) {
    const auto qv = Op::load_query(Q[i] + d);
    for (int j = 0; j < kR; ++j) acc[i * kR + j] = Op::accumulate(acc[i * kR + j], qv, rv[j]);
  }
}

// The scores of one tile ([i * kR + j]: query i against row j): `full` whole vector steps along the rows R,
// then, when `rest` elements remain, one step on their zero-padded copies (tails, kStep apart).
template <typename Op>
__attribute__((always_inline)) inline void tile_sums(const typename Op::Query* const* Q, const typename Op::Elem* const* R,
                                                     const typename Op::Elem* tails, int64_t valid_rows, int64_t full,
                                                     int64_t rest, typename Op::Score* sums) {
  using Elem = typename Op::Elem;
  constexpr int64_t kStep = Op::kStep;
  constexpr int kR = Op::kRows;
  typename Op::Vec acc[kQ * kR];
  for (auto& a : acc) a = Op::zero();
  for (int64_t s = 0; s < full; ++s) {
    const Elem* row[kR];
    for (int j = 0; j < kR; ++j) row[j] = R[j] + s * kStep;
    tile_step<Op>(acc, Q, s * kStep, row);
  }
  if (rest > 0) {  // the tail is the last step
    const Elem* row[kR];
    for (int j = 0; j < kR; ++j) row[j] = tails + (j < valid_rows ? j : valid_rows - 1) * kStep;
    tile_step<Op>(acc, Q, full * kStep, row);
  }
  store_sums<Op>(sums, acc);
}

template <typename Op>
void score_tiles(const typename Op::Elem* q, int64_t nq, const typename Op::Elem* rows, int64_t nrows, int64_t dim,
                 typename Op::Score* out) {
  using Elem = typename Op::Elem;
  using Query = typename Op::Query;
  constexpr int64_t kStep = Op::kStep;
  constexpr int kR = Op::kRows;
  const int64_t full = dim / kStep, rest = dim % kStep, padded = (full + (rest > 0)) * kStep;
  thread_local std::vector<Query> prepared_storage;  // reached once per call: each thread_local access costs a call
  std::vector<Query>& prepared = prepared_storage;
  prepared.assign(nq * padded, Query{0});
  for (int64_t i = 0; i < nq; ++i) Op::prepare(q + i * dim, dim, prepared.data() + i * padded);

  const Elem* tails = row_tails<kStep>(rows, nrows, dim);
  // Query tiles outside, rows inside: a tile's queries stay in L1 while the block's rows stream past.
  for (int64_t q0 = 0; q0 < nq; q0 += kQ) {
    const Query* Q[kQ];
    tile_pointers<Query, kQ>(prepared.data(), padded, q0, nq, Q);
    for (int64_t r0 = 0; r0 < nrows; r0 += kR) {
      const Elem* R[kR];
      tile_pointers<Elem, kR>(rows, dim, r0, nrows, R);
      const int64_t rows_here = std::min<int64_t>(kR, nrows - r0);
      alignas(32) typename Op::Score sums[(kQ * kR + 7) / 8 * 8];
      tile_sums<Op>(Q, R, tails != nullptr ? tails + r0 * kStep : nullptr, rows_here, full, rest, sums);
      // Query i's kR row scores are adjacent in `sums`, as they are in `out`.
      for (int i = 0; i < kQ && q0 + i < nq; ++i) {
        typename Op::Score* dst = out + (q0 + i) * nrows + r0;
        if (rows_here == kR) {
          std::memcpy(dst, sums + i * kR, sizeof(sums[0]) * kR);
        } else {
          for (int j = 0; j < rows_here; ++j) dst[j] = sums[i * kR + j];
        }
      }
    }
  }
}

}  // namespace

void dot_f32_avx2(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  score_tiles<DotF32>(q, nq, rows, nrows, dim, out);
}

void dot_i8_avx2(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  // Each tile of kQ queries takes the vpmaddubsw form unless one of them holds -128, which has no positive
  // int8 counterpart; runs of tiles of one kind go through score_tiles together.
  const int64_t tiles = (nq + kQ - 1) / kQ;
  std::vector<bool> holds_min(tiles);
  for (int64_t t = 0; t < tiles; ++t) {
    const int8_t* first = q + t * kQ * dim;
    const int8_t* last = q + std::min<int64_t>(nq, (t + 1) * kQ) * dim;
    holds_min[t] = std::find(first, last, INT8_MIN) != last;
  }
  for (int64_t begin = 0; begin < tiles;) {
    int64_t end = begin + 1;
    while (end < tiles && holds_min[end] == holds_min[begin]) ++end;
    const int64_t q0 = begin * kQ, count = std::min(nq, end * kQ) - q0;
    if (holds_min[begin]) {
      score_tiles<DotI8Madd>(q + q0 * dim, count, rows, nrows, dim, out + q0 * nrows);
    } else {
      score_tiles<DotI8Maddubs>(q + q0 * dim, count, rows, nrows, dim, out + q0 * nrows);
    }
    begin = end;
  }
}

void hamming_avx2(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out) {
  using namespace hamming;
  const int64_t full = nbytes / kStep, rest = nbytes % kStep, steps = full + (rest > 0);
  const int64_t tiles = (nq + kQueries - 1) / kQueries;
  // Per tile and step, each query's low then high nibbles; zeros past a query's bytes and for a last tile's
  // missing queries (their distances are computed and dropped).
  thread_local std::vector<uint8_t> prepared_storage;  // reached once per call: each thread_local access costs a call
  std::vector<uint8_t>& prepared = prepared_storage;
  prepared.assign(tiles * steps * kTileStep, 0);
  for (int64_t i = 0; i < nq; ++i) {
    for (int64_t s = 0; s < steps; ++s) {
      alignas(32) uint8_t chunk[kStep] = {};
      std::memcpy(chunk, q + i * nbytes + s * kStep, std::min(kStep, nbytes - s * kStep));
      __m256i lo, hi;
      split(load_bytes(chunk), lo, hi);
      uint8_t* dst = prepared.data() + (i / kQueries * steps + s) * kTileStep + i % kQueries * 2 * kStep;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kStep), hi);
    }
  }
  const uint8_t* tails = row_tails<kStep>(rows, nrows, nbytes);
  // Query tiles outside, rows inside: a tile's queries stay in L1 while the block's rows stream past.
  for (int64_t t = 0; t < tiles; ++t) {
    const uint8_t* Q = prepared.data() + t * steps * kTileStep;
    const int64_t count = std::min<int64_t>(kQueries, nq - t * kQueries);
    int32_t* dst = out + t * kQueries * nrows;
    switch (steps) {  // up to 2,048-bit codes unrolled
#define FE_HAMMING_STEPS(n) \
  case n: tile_distances<n>(Q, count, rows, nrows, nbytes, tails, full, steps, dst); break;
      FE_HAMMING_STEPS(1) FE_HAMMING_STEPS(2) FE_HAMMING_STEPS(3) FE_HAMMING_STEPS(4)
      FE_HAMMING_STEPS(5) FE_HAMMING_STEPS(6) FE_HAMMING_STEPS(7) FE_HAMMING_STEPS(8)
#undef FE_HAMMING_STEPS
      default: tile_distances<0>(Q, count, rows, nrows, nbytes, tails, full, steps, dst);
    }
  }
}

}  // namespace fastembed_rt::cpu::kernels
