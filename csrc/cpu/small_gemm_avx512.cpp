// AVX-512 bodies of the small-batch linear layers. One panel loop serves the three weight kinds: per
// 16-column panel, up to 8 rows accumulate in registers over the k-groups (two chains each, even and odd
// groups, so that a single row is not bound by FMA latency), then an epilogue applies scales, bias and
// the activation and stores the 16 columns (masked at the last panel). int8 layers run their whole tiles of rows on
// AMX where the CPU has them (int8_tiles, int8_max_tiles), with results equal to the panel loops'.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "activations.h"
#include "amx.h"
#include "small_gemm_kernels.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")
#include <immintrin.h>

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int64_t kRowBlock = 8;

// float32 accumulators, shared by the float32 and bfloat16 weight kinds.
struct FloatAcc {
  using Acc = __m512;
  static Acc zero() { return _mm512_setzero_ps(); }
  static Acc add(Acc a, Acc b) { return _mm512_add_ps(a, b); }
};

// Each Op: load(w) one 16-column group of weights, broadcast(x_row, g) group g of an x row, madd(acc, x, w);
// step is the three in one.
struct F32Op : FloatAcc {
  // x rows as float32, one k per group.
  using X = __m512;
  static __m512 load(const void* w) { return _mm512_loadu_ps(w); }
  static X broadcast(const void* x_row, int64_t g) { return _mm512_set1_ps(static_cast<const float*>(x_row)[g]); }
  static __m512 madd(__m512 acc, X x, __m512 w) { return _mm512_fmadd_ps(x, w, acc); }
  static constexpr int64_t kGroup = 1;
};

struct BF16Op : FloatAcc {
  // x rows as bfloat16 pairs (one 32-bit word per group of two k).
  using X = __m512i;
  static __m512i load(const void* w) { return _mm512_loadu_si512(w); }
  static X broadcast(const void* x_row, int64_t g) { return _mm512_set1_epi32(static_cast<const int32_t*>(x_row)[g]); }
  static __m512 madd(__m512 acc, X x, __m512i w) { return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w); }
  static constexpr int64_t kGroup = 2;
};

struct I8Op {
  // x rows as unsigned codes (signed code + 128), four k per 32-bit word; vpdpbusd is unsigned x signed.
  using X = __m512i;
  static __m512i load(const void* w) { return _mm512_loadu_si512(w); }
  static X broadcast(const void* x_row, int64_t g) { return _mm512_set1_epi32(static_cast<const int32_t*>(x_row)[g]); }
  static __m512i madd(__m512i acc, X x, __m512i w) { return _mm512_dpbusd_epi32(acc, x, w); }
  static constexpr int64_t kGroup = 4;
  using Acc = __m512i;
  static Acc zero() { return _mm512_setzero_si512(); }
  static Acc add(Acc a, Acc b) { return _mm512_add_epi32(a, b); }
};

template <typename Op>
typename Op::Acc step(typename Op::Acc acc, const void* x_row, int64_t g, const void* w) {
  return Op::madd(acc, Op::broadcast(x_row, g), Op::load(w));
}

const int8_t* panels_of(const PackedLinear& w) {
  return w.kind == WeightKind::kFloat32    ? reinterpret_cast<const int8_t*>(w.f32.data())
         : w.kind == WeightKind::kBFloat16 ? reinterpret_cast<const int8_t*>(w.bf16.data())
                                           : w.i8.data();
}

// Calls epilogue(row, panel, acc) for every row and panel with the panel's accumulated dot products.
template <typename Op, typename Epilogue>
void panel_loop(const PackedLinear& w, const uint8_t* x, int64_t x_row_bytes, int64_t row_begin, int64_t row_end,
                int64_t panel_begin, int64_t panel_end, Epilogue epilogue) {
  const int64_t groups = w.k_padded / Op::kGroup;
  const int8_t* base = panels_of(w);
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int8_t* panel = base + p * groups * 64;
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowBlock) {
      const int64_t rows = row_end - r0 < kRowBlock ? row_end - r0 : kRowBlock;
      typename Op::Acc even[kRowBlock], odd[kRowBlock];
#pragma GCC unroll 8
      for (int64_t r = 0; r < kRowBlock; ++r) even[r] = odd[r] = Op::zero();
      const uint8_t* xr[kRowBlock];
#pragma GCC unroll 8
      for (int64_t r = 0; r < kRowBlock; ++r) xr[r] = x + (r0 + (r < rows ? r : 0)) * x_row_bytes;
      int64_t g = 0;
      for (; g + 1 < groups; g += 2) {
        const int8_t* w0 = panel + g * 64;
        const uintptr_t ahead = prefetch_address(w0);
        _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int64_t r = 0; r < kRowBlock; ++r) {
          if (r < rows) {
            even[r] = step<Op>(even[r], xr[r], g, w0);
            odd[r] = step<Op>(odd[r], xr[r], g + 1, w0 + 64);
          }
        }
      }
      if (g < groups) {
#pragma GCC unroll 8
        for (int64_t r = 0; r < kRowBlock; ++r) {
          if (r < rows) even[r] = step<Op>(even[r], xr[r], g, panel + g * 64);
        }
      }
      // Constant indices only (unrolled, the row count checked per row): an array indexed by a variable lives
      // in memory, and its accumulators were stored on every step of the k loop.
#pragma GCC unroll 8
      for (int64_t r = 0; r < kRowBlock; ++r) {
        if (r < rows) epilogue(r0 + r, p, Op::add(even[r], odd[r]));
      }
    }
  }
}

__mmask16 column_mask(const PackedLinear& w, int64_t p) {
  const int64_t left = w.n - p * kPanel;
  return left >= kPanel ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// bias (unless added already), activation and (for bfloat16 outputs) rounding, then one panel of row r to where
// `o` wants it.
void finish(const PackedLinear& w, int64_t r, int64_t p, __m512 v, Activation act, bool round_to_bf16,
            const PanelOutput& o, bool add_bias = true) {
  const __mmask16 mask = column_mask(w, p);
  if (add_bias && !w.bias.empty()) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, w.bias.data() + p * kPanel));
  if (act != Activation::kNone) {
    alignas(64) float lanes[kPanel];
    _mm512_store_ps(lanes, v);
    if (act == Activation::kGeluErf) {  // one loop per activation, so that each vectorizes
      for (int64_t j = 0; j < kPanel; ++j) lanes[j] = gelu_erf(lanes[j]);
    } else {
      for (int64_t j = 0; j < kPanel; ++j) lanes[j] = gelu_tanh(lanes[j]);
    }
    v = _mm512_load_ps(lanes);
  }
  if (round_to_bf16) {  // round to nearest even at 16 bits, as a bfloat16 output would hold it
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    v = _mm512_castsi512_ps(_mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u))));
  }
  if (o.mode == PanelOutput::kStore) {
    _mm512_mask_storeu_ps(o.out + r * w.n + p * kPanel, mask, v);
  } else {
    alignas(64) float lanes[kPanel];
    _mm512_store_ps(lanes, v);
    put_panel(o, w.n, r, p, lanes, w.n - p * kPanel < kPanel ? w.n - p * kPanel : kPanel);
  }
}

// The max loop's blocks: kMaxRows rows of one sequence against two panels hold 20 accumulators, 2 weight vectors
// and a broadcast in the 32 zmm registers; per k-group 2 weight loads and 10 broadcasts feed 20 multiply-adds, so
// the FMA ports bound it (the linear loop's 8 rows against one panel load 9 times per 8). 10 rather than 12: at
// 12 the compiler spilled a weight vector and ran 0.6x as fast in cache.
constexpr int kMaxRows = 10;

// The largest value(acc, row, panel) over rows r0 ... r0 + kRows - 1 for panels p and p + 1 (kPanels = 1: p only),
// taken into best[], while `lines` lines from `ahead` are prefetched.
template <int kRows, int kPanels, typename Op, typename Value>
inline void max_block(const int8_t* panel, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t r0,
                      int64_t p, Value& value, uintptr_t ahead, int64_t lines, __m512 (&best)[2]) {
  typename Op::Acc acc[kPanels][kRows];
  const uint8_t* xr[kRows];
#pragma GCC unroll 10
  for (int r = 0; r < kRows; ++r) {
    xr[r] = x + (r0 + r) * x_row_bytes;
#pragma GCC unroll 2
    for (int q = 0; q < kPanels; ++q) acc[q][r] = Op::zero();
  }
  // And the rows of the block after the next, a line per k-group (a block's rows span at most one line per group),
  // into L1: rows read 4 bytes at a time a row apart are streams the hardware prefetchers do not follow.
  const uintptr_t soon = reinterpret_cast<uintptr_t>(x + (r0 + 2 * kMaxRows) * x_row_bytes);
  for (int64_t g = 0; g < groups; ++g) {
    if (g < lines) prefetch_lines(ahead, g, g + 1);  // a line per k-group, the rest after the loop
    _mm_prefetch(reinterpret_cast<const char*>(soon + g * 64), _MM_HINT_T0);
    decltype(Op::load(panel)) wv[kPanels];
#pragma GCC unroll 2
    for (int q = 0; q < kPanels; ++q) {
      const int8_t* w = panel + (q * groups + g) * 64;
      _mm_prefetch(reinterpret_cast<const char*>(prefetch_address(w)), _MM_HINT_T0);  // weights out of cache (SPLADE's)
      wv[q] = Op::load(w);
    }
#pragma GCC unroll 10
    for (int r = 0; r < kRows; ++r) {
      const typename Op::X xb = Op::broadcast(xr[r], g);
#pragma GCC unroll 2
      for (int q = 0; q < kPanels; ++q) acc[q][r] = Op::madd(acc[q][r], xb, wv[q]);
    }
  }
  prefetch_lines(ahead, groups, lines);
#pragma GCC unroll 10
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 2
    for (int q = 0; q < kPanels; ++q) best[q] = _mm512_max_ps(best[q], value(acc[q][r], r0 + r, p + q));
  }
}

// Rows [r0, end) of one sequence as blocks of kMaxRows, then of 5, 2 and 1 rows (no block reads a row twice:
// short sequences, ColBERT documents of 30 tokens, would have wasted up to a third of a block).
template <int kPanels, typename Op, typename Value>
void max_run(const int8_t* panel, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t r0, int64_t end,
             int64_t p, Value& value, const RowPrefetch* prefetch, __m512 (&best)[2]) {
  auto block = [&](auto rows) {
    constexpr int kRows = decltype(rows)::value;
    const uintptr_t ahead = prefetch ? prefetch->rows + r0 * prefetch->row_bytes : 0;
    const int64_t lines = prefetch ? kRows * prefetch->row_bytes / 64 : 0;
    max_block<kRows, kPanels, Op>(panel, groups, x, x_row_bytes, r0, p, value, ahead, lines, best);
    r0 += kRows;
  };
  while (end - r0 >= kMaxRows) block(std::integral_constant<int, kMaxRows>{});
  if (end - r0 >= 5) block(std::integral_constant<int, 5>{});
  while (end - r0 >= 2) block(std::integral_constant<int, 2>{});
  if (end - r0 == 1) block(std::integral_constant<int, 1>{});
}

// Rows [row_begin, row_end) reduced by max into o's sequences (PanelOutput::kMax) for panels [panel_begin,
// panel_end), two panels at a time: each run of rows of one sequence a block at a time, the run's maximum kept in
// registers and then taken into its sequence's row (bias added: a constant does not move a maximum). The first
// panel pair prefetches as it goes (see RowPrefetch).
template <typename Op, typename Value>
void max_loop(const PackedLinear& w, const uint8_t* x, int64_t x_row_bytes, int64_t row_begin, int64_t row_end,
              const PanelOutput& o, int64_t panel_begin, int64_t panel_end, const RowPrefetch& prefetch, Value value) {
  const int64_t groups = w.k_padded / Op::kGroup;
  for (int64_t p = panel_begin; p < panel_end; p += 2) {
    const int8_t* panel = panels_of(w) + p * groups * 64;
    const bool pair = p + 1 < panel_end;
    const RowPrefetch* fetch = prefetch.rows != 0 && p == panel_begin ? &prefetch : nullptr;
    for (int64_t run = row_begin; run < row_end;) {
      const int32_t sequence = o.row_sequence[run];
      int64_t end = run + 1;
      while (end < row_end && o.row_sequence[end] == sequence) ++end;
      __m512 best[2] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY)};
      if (pair) {
        max_run<2, Op>(panel, groups, x, x_row_bytes, run, end, p, value, fetch, best);
      } else {
        max_run<1, Op>(panel, groups, x, x_row_bytes, run, end, p, value, fetch, best);
      }
      for (int q = 0; q < (pair ? 2 : 1); ++q) {
        const __mmask16 mask = column_mask(w, p + q);
        __m512 v = best[q];
        if (!w.bias.empty()) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, w.bias.data() + (p + q) * kPanel));
        float* out = o.out + sequence * w.n + (p + q) * kPanel;
        _mm512_mask_storeu_ps(out, mask, _mm512_max_ps(_mm512_maskz_loadu_ps(mask, out), v));
      }
      run = end;
    }
  }
}

// What an int8 panel's epilogue needs of panel p (its column sums, scales and bias), loaded once: the tile epilogues
// load it once per tile rather than per row.
struct PanelScales {
  __mmask16 mask;
  __m512i shift;  // 128 x the column sums: the unsigned codes' offset
  __m512 col, bias;
  PanelScales(const PackedLinear& w, int64_t p) : mask(column_mask(w, p)) {
    shift = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(mask, w.column_sums.data() + p * kPanel), 7);
    col = _mm512_maskz_loadu_ps(mask, w.column_scales.data() + p * kPanel);
    bias = w.bias.empty() ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, w.bias.data() + p * kPanel);
  }
  __m512 dequantized(__m512i acc, float row_scale) const {
    const __m512i exact = _mm512_sub_epi32(acc, shift);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(_mm512_set1_ps(row_scale), col));
  }
};

// Row r's int8 dot products with panel p as float32: the +128 shift taken back off (it added 128 * the column's
// weight sum), then scaled by the row's and the columns' scales, exactly as the linear epilogue does.
__m512 dequantized(const PackedLinear& w, const float* row_scales, __m512i acc, int64_t r, int64_t p) {
  return PanelScales(w, p).dequantized(acc, row_scales[r]);
}

// 16 values of x from p (float32 or bfloat16 bits), the lanes outside `mask` zero.
inline __m512 load_floats(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline __m512 load_floats(const uint16_t* p, __mmask16 mask) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}

// quantize_rows' symmetric codes of rows [begin, end) of x [m, k], shifted by 128 into the unsigned bytes the
// kernels read, in one pass over each row after its max (the generic quantize_rows and place_codes took three).
template <typename T>
void quantize_rows_to_codes(const PackedLinear& w, const T* x, int64_t m, int64_t begin, int64_t end, uint8_t* scratch) {
  const int64_t k = w.k, kp = w.k_padded;
  float* scales = const_cast<float*>(scratch_scales(w, scratch, m));
  int32_t* zeros = reinterpret_cast<int32_t*>(scales + m);
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * k;
    __m512 largest = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j += 16) {
      const __mmask16 mask = k - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - j)) - 1);
      largest = _mm512_max_ps(_mm512_abs_ps(load_floats(xr + j, mask)), largest);  // passes a NaN over, as quantize_rows does
    }
    const float absmax = _mm512_reduce_max_ps(largest);
    const __m512 inv = _mm512_set1_ps(absmax > 0.0f ? 127.0f / absmax : 0.0f);
    uint8_t* row = scratch + r * kp;
    for (int64_t j = 0; j < k; j += 16) {
      const __mmask16 mask = k - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - j)) - 1);
      __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(load_floats(xr + j, mask), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_set1_ps(127.0f), _mm512_max_ps(_mm512_set1_ps(-127.0f), v));
      const __m512i code = _mm512_add_epi32(_mm512_cvttps_epi32(v), _mm512_set1_epi32(128));
      _mm512_mask_cvtepi32_storeu_epi8(row + j, mask, code);
    }
    std::fill(row + k, row + kp, uint8_t{128});
    scales[r] = absmax / 127.0f;
    zeros[r] = 128;
  }
}

// int8 on AMX tiles: 16 or 32 rows against one or two panels, their 16 x 16 int32 sums in tile registers 0-3
// over all of k (A tiles 4-5: 16 rows x 64 unsigned codes, a row apart in x; B tiles 6-7: a panel's next 16
// k-groups, which its packed layout [k/4][16][4] already holds as a tile's rows), stored into sums[2 * row tile +
// panel]. tdpbusd sums what vpdpbusd sums, and the epilogues below compute what the panel loops' do from there: the
// results equal theirs bit for bit.
#define FE_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,amx-tile,amx-int8")))
using TileSums = int32_t[4][kTileRows][kPanel];

template <int kRowTiles, int kPanelTiles>
FE_AMX_TARGET void int8_tile_sums(const PackedLinear& w, const uint8_t* x, int64_t r0, int64_t p, TileSums& sums) {
  const int64_t kp = w.k_padded, panel_bytes = kp * kPanel;
  const uint8_t* a = x + r0 * kp;
  const int8_t* b = w.i8.data() + p * panel_bytes;
  _tile_zero(0);
  if (kPanelTiles > 1) _tile_zero(1);
  if (kRowTiles > 1) _tile_zero(2);
  if (kRowTiles > 1 && kPanelTiles > 1) _tile_zero(3);
  for (int64_t step = 0; step < kp; step += kTileRowBytes) {
    _tile_loadd(4, a + step, kp);
    if (kRowTiles > 1) _tile_loadd(5, a + kTileRows * kp + step, kp);
    _tile_loadd(6, b + step * kPanel, kTileRowBytes);
    if (kPanelTiles > 1) _tile_loadd(7, b + panel_bytes + step * kPanel, kTileRowBytes);
    _tile_dpbusd(0, 4, 6);
    if (kPanelTiles > 1) _tile_dpbusd(1, 4, 7);
    if (kRowTiles > 1) _tile_dpbusd(2, 5, 6);
    if (kRowTiles > 1 && kPanelTiles > 1) _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, sums[0], kTileRowBytes);
  if (kPanelTiles > 1) _tile_stored(1, sums[1], kTileRowBytes);
  if (kRowTiles > 1) _tile_stored(2, sums[2], kTileRowBytes);
  if (kRowTiles > 1 && kPanelTiles > 1) _tile_stored(3, sums[3], kTileRowBytes);
}

// The linear epilogue of a block of tiles: as finish(dequantized(...)), row by row.
template <int kRowTiles, int kPanelTiles>
void finish_tiles(const PackedLinear& w, const TileSums& sums, const float* row_scales, int64_t r0, int64_t p,
                  Activation act, const PanelOutput& o) {
  for (int q = 0; q < kPanelTiles; ++q) {
    const PanelScales panel(w, p + q);
    for (int t = 0; t < kRowTiles; ++t) {
      for (int64_t i = 0; i < kTileRows; ++i) {
        const int64_t r = r0 + t * kTileRows + i;
        __m512 v = panel.dequantized(_mm512_load_si512(sums[2 * t + q][i]), row_scales[r]);
        if (!w.bias.empty()) v = _mm512_add_ps(v, panel.bias);
        if (act == Activation::kNone && o.mode == PanelOutput::kStore) {
          _mm512_mask_storeu_ps(o.out + r * w.n + (p + q) * kPanel, panel.mask, v);
        } else {
          finish(w, r, p + q, v, act, false, o, false);
        }
      }
    }
  }
}

// The whole tiles of rows [row_begin, row_end) for panels [panel_begin, panel_end), two panels at a time, each
// pair against every row block while its weights are in L1; returns the first row left (under 16 from the end).
int64_t int8_tiles(const PackedLinear& w, const uint8_t* x, const float* row_scales, int64_t row_begin, int64_t row_end,
                   int64_t panel_begin, int64_t panel_end, Activation act, const PanelOutput& o) {
  configure_tiles();
  const int64_t whole = row_begin + (row_end - row_begin) / kTileRows * kTileRows;
  alignas(64) TileSums sums;
  for (int64_t p = panel_begin; p < panel_end; p += 2) {
    auto block = [&](auto row_tiles, auto panel_tiles, int64_t r) {
      constexpr int kRowTiles = decltype(row_tiles)::value, kPanelTiles = decltype(panel_tiles)::value;
      int8_tile_sums<kRowTiles, kPanelTiles>(w, x, r, p, sums);
      finish_tiles<kRowTiles, kPanelTiles>(w, sums, row_scales, r, p, act, o);
    };
    using One = std::integral_constant<int, 1>;
    using Two = std::integral_constant<int, 2>;
    const bool pair = p + 1 < panel_end;
    int64_t r = row_begin;
    for (; r + 2 * kTileRows <= whole; r += 2 * kTileRows) pair ? block(Two{}, Two{}, r) : block(Two{}, One{}, r);
    if (r < whole) pair ? block(One{}, Two{}, r) : block(One{}, One{}, r);
  }
  return whole;
}

// int8 max on AMX tiles (MaxSim, SPLADE's max pooling): the sums of each block of whole tiles, then row by row in
// order, each run of one sequence's rows kept as its maximum (two panels) and taken into the sequence's row of out,
// bias added, when the run ends, as max_loop does. Where there is one pair of panels, as it takes each row, the row of
// the next chunk at the same place is prefetched (RowPrefetch). Returns the first row left (under 16 from the end).
int64_t int8_max_tiles(const PackedLinear& w, const uint8_t* x, const float* row_scales, int64_t row_begin,
                       int64_t row_end, const PanelOutput& o, int64_t panel_begin, int64_t panel_end,
                       const RowPrefetch& prefetch) {
  configure_tiles();
  const int64_t whole = row_begin + (row_end - row_begin) / kTileRows * kTileRows;
  alignas(64) TileSums sums;
  // Only where one pair of panels is all there is (MaxSim's queries): over many (SPLADE's vocabulary), the first
  // pair's burst of prefetches for rows of 3 KiB made the whole 2x slower.
  const bool one_pair = panel_end - panel_begin <= 2;
  const int64_t fetch_lines = prefetch.rows != 0 && one_pair ? (prefetch.row_bytes + 63) / 64 : 0;
  for (int64_t p = panel_begin; p < panel_end; p += 2) {
    const int panels = p + 1 < panel_end ? 2 : 1;
    const PanelScales scales[2] = {PanelScales(w, p), PanelScales(w, panels > 1 ? p + 1 : p)};
    int32_t sequence = -1;
    __m512 best[2];
    auto take_run = [&] {
      if (sequence < 0) return;
      for (int q = 0; q < panels; ++q) {
        __m512 v = best[q];
        if (!w.bias.empty()) v = _mm512_add_ps(v, scales[q].bias);
        float* out = o.out + sequence * w.n + (p + q) * kPanel;
        _mm512_mask_storeu_ps(out, scales[q].mask, _mm512_max_ps(_mm512_maskz_loadu_ps(scales[q].mask, out), v));
      }
    };
    for (int64_t r0 = row_begin; r0 < whole; r0 += 2 * kTileRows) {
      const int row_tiles = r0 + 2 * kTileRows <= whole ? 2 : 1;
      if (row_tiles == 2) {
        panels == 2 ? int8_tile_sums<2, 2>(w, x, r0, p, sums) : int8_tile_sums<2, 1>(w, x, r0, p, sums);
      } else {
        panels == 2 ? int8_tile_sums<1, 2>(w, x, r0, p, sums) : int8_tile_sums<1, 1>(w, x, r0, p, sums);
      }
      for (int64_t i = 0; i < row_tiles * kTileRows; ++i) {
        const int64_t r = r0 + i;
        if (fetch_lines) prefetch_lines(prefetch.rows + r * prefetch.row_bytes, 0, fetch_lines);  // a row at a time
        if (o.row_sequence[r] != sequence) {
          take_run();
          sequence = o.row_sequence[r];
          best[0] = best[1] = _mm512_set1_ps(-INFINITY);
        }
        const int t = static_cast<int>(i / kTileRows), row = static_cast<int>(i % kTileRows);
        for (int q = 0; q < panels; ++q) {
          best[q] = _mm512_max_ps(best[q], scales[q].dequantized(_mm512_load_si512(sums[2 * t + q][row]), row_scales[r]));
        }
      }
    }
    take_run();
  }
  return whole;
}

}  // namespace

void max_panels_avx512(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                       int64_t row_end, const PanelOutput& out, int64_t panel_begin, int64_t panel_end,
                       const RowPrefetch& prefetch, bool int8_tiles) {
  auto as_is = [](__m512 acc, int64_t, int64_t) { return acc; };
  if (w.kind == WeightKind::kFloat32) {
    max_loop<F32Op>(w, reinterpret_cast<const uint8_t*>(x), w.k * 4, row_begin, row_end, out, panel_begin, panel_end,
                    prefetch, as_is);
  } else if (w.kind == WeightKind::kBFloat16) {
    max_loop<BF16Op>(w, scratch, w.k_padded * 2, row_begin, row_end, out, panel_begin, panel_end, prefetch, as_is);
  } else {
    const float* scales = scratch_scales(w, scratch, m);
    const int64_t rest = int8_tiles && int8_on_tiles(w) ? int8_max_tiles(w, scratch, scales, row_begin, row_end, out, panel_begin, panel_end, prefetch)
                                          : row_begin;
    max_loop<I8Op>(w, scratch, w.k_padded, rest, row_end, out, panel_begin, panel_end, rest == row_begin ? prefetch : RowPrefetch{},
                   [&](__m512i acc, int64_t r, int64_t p) { return dequantized(w, scales, acc, r, p); });
  }
}

void linear_panels_avx512(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                          int64_t row_end, Activation act, bool round_output, const PanelOutput& out,
                          int64_t panel_begin, int64_t panel_end) {
  if (w.kind == WeightKind::kFloat32) {
    panel_loop<F32Op>(w, reinterpret_cast<const uint8_t*>(x), w.k * 4, row_begin, row_end, panel_begin, panel_end,
                      [&](int64_t r, int64_t p, __m512 acc) { finish(w, r, p, acc, act, false, out); });
  } else if (w.kind == WeightKind::kBFloat16) {
    panel_loop<BF16Op>(w, scratch, w.k_padded * 2, row_begin, row_end, panel_begin, panel_end,
                       [&](int64_t r, int64_t p, __m512 acc) { finish(w, r, p, acc, act, round_output, out); });
  } else {
    const float* scales = scratch_scales(w, scratch, m);
    const int64_t rest =
        int8_on_tiles(w) ? int8_tiles(w, scratch, scales, row_begin, row_end, panel_begin, panel_end, act, out) : row_begin;
    panel_loop<I8Op>(w, scratch, w.k_padded, rest, row_end, panel_begin, panel_end, [&](int64_t r, int64_t p, __m512i acc) {
      finish(w, r, p, dequantized(w, scales, acc, r, p), act, false, out);
    });
  }
}

void quantize_codes_avx512(const PackedLinear& w, const RowsIn& x, int64_t m, int64_t begin, int64_t end,
                           uint8_t* scratch) {
  if (x.bf16) {
    quantize_rows_to_codes(w, x.bf16, m, begin, end, scratch);
  } else {
    quantize_rows_to_codes(w, x.floats, m, begin, end, scratch);
  }
}

}  // namespace fastembed_rt::cpu::kernels
