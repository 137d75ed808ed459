// AVX2 bodies of the packed linear layers. One panel loop serves the three weight kinds: per 16-column panel
// (two 256-bit vectors), up to 6 rows (4 for int8) accumulate in 12 (8) registers over the k-groups, then an epilogue applies
// scales, bias and the activation and stores the panel's columns. bfloat16 weights are widened to float32 in
// registers (vpunpck{l,h}wd against zero: a shuffle, off the FMA ports) and meet float32 x as it is: on 3,700 rows
// of MiniLM's layers as fast as float32 weights (Zen 3 EPYC), where rounding x to bfloat16 first, a pass of its own,
// took a 1,536 -> 384 layer from 183 to 153 GFLOP/s (medians of 30). (Widening each panel once into a float32 copy
// for the whole chunk of rows was no faster than in registers.) int8 layers with byte codes (7-bit
// weights, or 7-bit asymmetric activation codes: small_gemm.h) multiply unsigned activation codes by the weight
// bytes with vpmaddubsw, whose int16 pair sums cannot saturate then, and add the pairs up with vpmaddwd by ones;
// other int8 weights take vpmaddwd on int16 codes and weights sign-extended as they load (exact for any
// values): half the k per broadcast and per instruction.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "activations.h"
#include "small_gemm_kernels.h"

#pragma GCC target("avx2,fma,f16c,bmi2")
#include <immintrin.h>

namespace fastembed_rt::cpu::kernels {
namespace {

// x rows as float32, one k per group; weights float32 [k][16].
struct F32Op {
  using Acc = __m256;
  using W = __m256;
  static constexpr int64_t kGroupBytes = 64;
  static constexpr int kRowBlock = 6;  // 12 accumulators + 2 weight vectors + 1 broadcast: 15 of the 16 ymm
  static Acc zero() { return _mm256_setzero_ps(); }
  static void load(const int8_t* w, W& lo, W& hi) {
    lo = _mm256_loadu_ps(reinterpret_cast<const float*>(w));
    hi = _mm256_loadu_ps(reinterpret_cast<const float*>(w) + 8);
  }
  static W broadcast(const uint8_t* x_row, int64_t g) { return _mm256_broadcast_ss(reinterpret_cast<const float*>(x_row) + g); }
  static Acc madd(Acc acc, W x, W w) { return _mm256_fmadd_ps(x, w, acc); }
};

// x rows as float32; weights bfloat16 [k][16] in widening order.
struct WidenBF16Op : F32Op {
  static constexpr int64_t kGroupBytes = 32;
  static void load(const int8_t* w, W& lo, W& hi) {
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), packed));
    hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), packed));
  }
};

// x rows as int16 codes, two k per 32-bit word; weights int8 [k/2][16][2], sign-extended to int16 as they load
// (a shuffle per 16 weights, shared by the row block; half the bytes of int16 weights to stream).
struct I16Op {
  using Acc = __m256i;
  using W = __m256i;
  static constexpr int64_t kGroupBytes = 32;
  static constexpr int kRowBlock = 4;  // 8 accumulators + 2 weights + 1 broadcast + 1 product (6 rows spilled)
  static Acc zero() { return _mm256_setzero_si256(); }
  static void load(const int8_t* w, W& lo, W& hi) {
    lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w) + 1));
  }
  static W broadcast(const uint8_t* x_row, int64_t g) { return _mm256_set1_epi32(reinterpret_cast<const int32_t*>(x_row)[g]); }
  static Acc madd(Acc acc, W x, W w) { return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w)); }
};

// x rows as unsigned codes (code + zero point), four k per 32-bit word; weights int8 [k/4][16][4], whose
// products with the codes never saturate a pair sum (7-bit weights, or codes up to 127).
struct ByteI8Op : I16Op {
  static constexpr int64_t kGroupBytes = 64;
  static void load(const int8_t* w, W& lo, W& hi) {
    lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w) + 1);
  }
  static Acc madd(Acc acc, W x, W w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)));
  }
};

// Rows r0 ... r0 + kRows - 1 of x against one panel, summed over all k-groups into lo/hi (its columns 0-7, 8-15),
// with the panel's weights prefetched ahead; with `rows_ahead` (the max kernels) also x's rows two blocks on into
// L1 (rows read 4 bytes at a time a row apart are streams the hardware prefetchers do not follow), and `lines`
// lines from `ahead` (the next chunk's rows, see RowPrefetch) into L2, a line per k-group, the rest after the loop.
// The row count is a compile-time constant, so that the accumulators stay in registers and the loop has no branch.
template <int kRows, typename Op, bool rows_ahead = false>
inline void accumulate(const int8_t* panel, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t r0,
                       typename Op::Acc (&lo)[kRows], typename Op::Acc (&hi)[kRows], uintptr_t ahead = 0,
                       int64_t lines = 0) {
  const uint8_t* xr[kRows];
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    lo[r] = hi[r] = Op::zero();
    xr[r] = x + (r0 + r) * x_row_bytes;
  }
  const uintptr_t weights_ahead = prefetch_address(panel);
  const uintptr_t soon = reinterpret_cast<uintptr_t>(x + (r0 + 2 * Op::kRowBlock) * x_row_bytes);
  for (int64_t g = 0; g < groups; ++g) {
    if (rows_ahead) {
      if (g < lines) prefetch_lines(ahead, g, g + 1);
      _mm_prefetch(reinterpret_cast<const char*>(soon + g * 64), _MM_HINT_T0);
    }
    if (Op::kGroupBytes >= 64 || g % 2 == 0) {  // one prefetch per 64-byte line
      _mm_prefetch(reinterpret_cast<const char*>(weights_ahead + g * Op::kGroupBytes), _MM_HINT_T0);
    }
    typename Op::W w_lo, w_hi;
    Op::load(panel + g * Op::kGroupBytes, w_lo, w_hi);
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const typename Op::W xv = Op::broadcast(xr[r], g);
      lo[r] = Op::madd(lo[r], xv, w_lo);
      hi[r] = Op::madd(hi[r], xv, w_hi);
    }
  }
  if (rows_ahead) prefetch_lines(ahead, groups, lines);
}

// kRows rows (rows r0...) of one panel, each then to the epilogue.
template <int kRows, typename Op, typename Epilogue>
inline void row_block(const int8_t* panel, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t r0,
                      int64_t p, Epilogue& epilogue) {
  typename Op::Acc lo[kRows], hi[kRows];
  accumulate<kRows, Op>(panel, groups, x, x_row_bytes, r0, lo, hi);
  // Unrolled like every loop over the rows: an array indexed by a variable anywhere lives in memory, and the
  // accumulators were stored on every step of the k loop.
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) epilogue(r0 + r, p, lo[r], hi[r]);
}

// Calls epilogue(row, panel, lo, hi) for every row and panel with the panel's columns 0-7 and 8-15.
template <typename Op, typename Epilogue>
void panel_loop(const int8_t* base, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t row_begin,
                int64_t row_end, int64_t panel_begin, int64_t panel_end, Epilogue epilogue) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int8_t* panel = base + p * groups * Op::kGroupBytes;
    int64_t r0 = row_begin;
    for (; r0 + Op::kRowBlock <= row_end; r0 += Op::kRowBlock) {
      row_block<Op::kRowBlock, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue);
    }
    switch (row_end - r0) {
      case 5: row_block<5, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue); break;
      case 4: row_block<4, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue); break;
      case 3: row_block<3, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue); break;
      case 2: row_block<2, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue); break;
      case 1: row_block<1, Op>(panel, groups, x, x_row_bytes, r0, p, epilogue); break;
      default: break;
    }
  }
}

// bias, activation and (for bfloat16 outputs) rounding of one panel of row r, then to where `o` wants it.
void finish(const PackedLinear& w, int64_t r, int64_t p, float* lanes, Activation act, bool round_to_bf16,
            const PanelOutput& o) {
  const int64_t cols = w.n - p * kPanel < kPanel ? w.n - p * kPanel : kPanel;
  if (!w.bias.empty()) {
    const float* bias = w.bias.data() + p * kPanel;
    for (int64_t j = 0; j < cols; ++j) lanes[j] += bias[j];
  }
  if (act == Activation::kGeluErf) {  // one loop per activation, so that each vectorizes
    for (int64_t j = 0; j < kPanel; ++j) lanes[j] = gelu_erf(lanes[j]);
  } else if (act == Activation::kGeluTanh) {
    for (int64_t j = 0; j < kPanel; ++j) lanes[j] = gelu_tanh(lanes[j]);
  }
  if (round_to_bf16) {
    for (int64_t j = 0; j < kPanel; ++j) lanes[j] = to_float(from_float<bf16>(lanes[j]));
  }
  if (o.mode == PanelOutput::kStore) {
    float* row = o.out + r * w.n + p * kPanel;
    for (int64_t j = 0; j < cols; ++j) row[j] = lanes[j];
  } else {
    put_panel(o, w.n, r, p, lanes, cols);
  }
}

// The largest value(lo, hi, row, p) over one sequence's rows r0 ... r0 + kRows - 1 against panel p, into
// best_lo/hi, while `lines` lines from `ahead` are prefetched.
template <int kRows, typename Op, typename Value>
inline void max_block(const int8_t* panel, int64_t groups, const uint8_t* x, int64_t x_row_bytes, int64_t r0,
                      int64_t p, Value& value, uintptr_t ahead, int64_t lines, __m256& best_lo, __m256& best_hi) {
  typename Op::Acc lo[kRows], hi[kRows];
  accumulate<kRows, Op, true>(panel, groups, x, x_row_bytes, r0, lo, hi, ahead, lines);
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    __m256 v_lo, v_hi;
    value(lo[r], hi[r], r0 + r, p, v_lo, v_hi);
    best_lo = _mm256_max_ps(best_lo, v_lo);
    best_hi = _mm256_max_ps(best_hi, v_hi);
  }
}

// Rows [row_begin, row_end) reduced by max into o's sequences (PanelOutput::kMax) for panels [panel_begin,
// panel_end): each run of rows of one sequence in blocks of Op::kRowBlock, the run's maximum kept in registers and
// then taken into its sequence's row (bias added: a constant does not move a maximum). The first panel
// prefetches as it goes (see RowPrefetch).
template <typename Op, typename Value>
void max_loop(const PackedLinear& w, const int8_t* base, int64_t groups, const uint8_t* x, int64_t x_row_bytes,
              int64_t row_begin, int64_t row_end, const PanelOutput& o, int64_t panel_begin, int64_t panel_end,
              const RowPrefetch& prefetch, Value value) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int8_t* panel = base + p * groups * Op::kGroupBytes;
    const bool fetch = prefetch.rows != 0 && p == panel_begin;
    for (int64_t run = row_begin; run < row_end;) {
      const int32_t sequence = o.row_sequence[run];
      int64_t end = run + 1;
      while (end < row_end && o.row_sequence[end] == sequence) ++end;
      __m256 best_lo = _mm256_set1_ps(-INFINITY), best_hi = best_lo;
      for (int64_t r0 = run; r0 < end; r0 += Op::kRowBlock) {
        const int64_t rows = std::min<int64_t>(Op::kRowBlock, end - r0);
        const uintptr_t ahead = fetch ? prefetch.rows + r0 * prefetch.row_bytes : 0;
        const int64_t lines = fetch ? rows * prefetch.row_bytes / 64 : 0;
        auto block = [&](auto row_count) {
          max_block<decltype(row_count)::value, Op>(panel, groups, x, x_row_bytes, r0, p, value, ahead, lines, best_lo,
                                                    best_hi);
        };
        switch (rows) {  // the run's last rows as a block of their own count (5 at most: kRowBlock is 6 or 4)
          case 1: block(std::integral_constant<int, 1>{}); break;
          case 2: block(std::integral_constant<int, 2>{}); break;
          case 3: block(std::integral_constant<int, 3>{}); break;
          case 4: block(std::integral_constant<int, 4>{}); break;
          case 5: block(std::integral_constant<int, 5>{}); break;
          default: block(std::integral_constant<int, Op::kRowBlock>{}); break;
        }
      }
      alignas(32) float lanes[kPanel];
      _mm256_store_ps(lanes, best_lo);
      _mm256_store_ps(lanes + 8, best_hi);
      const int64_t cols = std::min(kPanel, w.n - p * kPanel);
      if (!w.bias.empty()) {
        for (int64_t j = 0; j < cols; ++j) lanes[j] += w.bias[p * kPanel + j];
      }
      float* out = o.out + sequence * w.n + p * kPanel;
      for (int64_t j = 0; j < cols; ++j) out[j] = std::max(out[j], lanes[j]);
      run = end;
    }
  }
}

// Row r's exact int32 dot products with panel p (lo: columns 0-7, hi: 8-15) dequantized as dequantize_rows does.
// Byte codes (`bytes`: byte_codes(w), asked once per call, not per row and panel: 0.6% of an int8 forward's
// samples went to the call) carry the row's zero point, which added zero * (sum of the column's weights) to each
// product.
void dequantized(const PackedLinear& w, bool bytes, const float* scales, const int32_t* zeros, __m256i lo, __m256i hi,
                 int64_t r, int64_t p, __m256& v_lo, __m256& v_hi) {
  if (bytes) {
    const __m256i zero = _mm256_set1_epi32(zeros[r]);
    const int32_t* sums = w.column_sums.data() + p * kPanel;
    lo = _mm256_sub_epi32(lo, _mm256_mullo_epi32(zero, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums))));
    hi = _mm256_sub_epi32(hi, _mm256_mullo_epi32(zero, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + 8))));
  }
  const __m256 row = _mm256_set1_ps(scales[r]);
  const float* col = w.column_scales.data() + p * kPanel;
  v_lo = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(row, _mm256_loadu_ps(col)));
  v_hi = _mm256_mul_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(row, _mm256_loadu_ps(col + 8)));
}

}  // namespace

void linear_panels_avx2(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                        int64_t row_end, Activation act, bool round_output, const PanelOutput& out,
                        int64_t panel_begin, int64_t panel_end) {
  const int64_t groups = w.k_padded / group_of(w);
  auto float_epilogue = [&](int64_t r, int64_t p, __m256 lo, __m256 hi) {
    alignas(32) float lanes[kPanel];
    _mm256_store_ps(lanes, lo);
    _mm256_store_ps(lanes + 8, hi);
    finish(w, r, p, lanes, act, round_output, out);
  };
  if (w.kind == WeightKind::kFloat32) {
    panel_loop<F32Op>(reinterpret_cast<const int8_t*>(w.f32.data()), groups, reinterpret_cast<const uint8_t*>(x),
                      w.k * 4, row_begin, row_end, panel_begin, panel_end, float_epilogue);
    return;
  }
  if (w.kind == WeightKind::kBFloat16) {
    panel_loop<WidenBF16Op>(reinterpret_cast<const int8_t*>(w.bf16.data()), groups, reinterpret_cast<const uint8_t*>(x),
                            w.k * 4, row_begin, row_end, panel_begin, panel_end, float_epilogue);
    return;
  }
  const float* scales = scratch_scales(w, scratch, m);
  const auto* zeros = reinterpret_cast<const int32_t*>(scales + m);
  const bool bytes = byte_codes(w);
  auto int8_epilogue = [&](int64_t r, int64_t p, __m256i lo, __m256i hi) {
    __m256 v_lo, v_hi;
    dequantized(w, bytes, scales, zeros, lo, hi, r, p, v_lo, v_hi);
    float_epilogue(r, p, v_lo, v_hi);
  };
  if (bytes) {
    panel_loop<ByteI8Op>(w.i8.data(), groups, scratch, w.k_padded, row_begin, row_end, panel_begin, panel_end,
                           int8_epilogue);
  } else {
    panel_loop<I16Op>(w.i8.data(), groups, scratch, w.k_padded * 2, row_begin,
                      row_end, panel_begin, panel_end, int8_epilogue);
  }
}

void max_panels_avx2(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                     int64_t row_end, const PanelOutput& out, int64_t panel_begin, int64_t panel_end,
                     const RowPrefetch& prefetch, bool) {
  const int64_t groups = w.k_padded / group_of(w);
  auto as_is = [](__m256 lo, __m256 hi, int64_t, int64_t, __m256& v_lo, __m256& v_hi) { v_lo = lo, v_hi = hi; };
  if (w.kind == WeightKind::kFloat32) {
    max_loop<F32Op>(w, reinterpret_cast<const int8_t*>(w.f32.data()), groups, reinterpret_cast<const uint8_t*>(x),
                    w.k * 4, row_begin, row_end, out, panel_begin, panel_end, prefetch, as_is);
    return;
  }
  if (w.kind == WeightKind::kBFloat16) {
    max_loop<WidenBF16Op>(w, reinterpret_cast<const int8_t*>(w.bf16.data()), groups, reinterpret_cast<const uint8_t*>(x),
                          w.k * 4, row_begin, row_end, out, panel_begin, panel_end, prefetch, as_is);
    return;
  }
  const float* scales = scratch_scales(w, scratch, m);
  const auto* zeros = reinterpret_cast<const int32_t*>(scales + m);
  const bool bytes = byte_codes(w);
  auto int8_value = [&](__m256i lo, __m256i hi, int64_t r, int64_t p, __m256& v_lo, __m256& v_hi) {
    dequantized(w, bytes, scales, zeros, lo, hi, r, p, v_lo, v_hi);
  };
  if (bytes) {
    max_loop<ByteI8Op>(w, w.i8.data(), groups, scratch, w.k_padded, row_begin, row_end, out, panel_begin, panel_end,
                       prefetch, int8_value);
  } else {
    max_loop<I16Op>(w, w.i8.data(), groups, scratch, w.k_padded * 2, row_begin, row_end, out, panel_begin, panel_end,
                    prefetch, int8_value);
  }
}

void widen_bfloat16_panels_avx2(const PackedLinear& w, float* out, int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int8_t* panel = reinterpret_cast<const int8_t*>(w.bf16.data()) + p * w.k_padded * WidenBF16Op::kGroupBytes;
    const int64_t cols = std::min(kPanel, w.n - p * kPanel);
    for (int64_t i = 0; i < w.k; ++i) {
      __m256 lo, hi;
      WidenBF16Op::load(panel + i * WidenBF16Op::kGroupBytes, lo, hi);
      float* row = out + i * w.n + p * kPanel;
      if (cols == kPanel) {
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row + 8, hi);
      } else {
        alignas(32) float lanes[kPanel];
        _mm256_store_ps(lanes, lo);
        _mm256_store_ps(lanes + 8, hi);
        std::copy(lanes, lanes + cols, row);
      }
    }
  }
}

}  // namespace fastembed_rt::cpu::kernels
