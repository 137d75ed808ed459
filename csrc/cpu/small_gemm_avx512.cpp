// AVX-512 bodies of the small-batch linear layers. One panel loop serves the three weight kinds: per
// 16-column panel, up to 8 rows accumulate in registers over the k-groups (two chains each, even and odd
// groups, so that a single row is not bound by FMA latency), then an epilogue applies scales, bias and
// the activation and stores the 16 columns (masked at the last panel).
#include "activations.h"
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

struct F32Op : FloatAcc {
  // x rows as float32, one k per group.
  static __m512 step(__m512 acc, const void* x_row, int64_t g, const void* w) {
    return _mm512_fmadd_ps(_mm512_set1_ps(static_cast<const float*>(x_row)[g]), _mm512_loadu_ps(w), acc);
  }
  static constexpr int64_t kGroup = 1;
};

struct BF16Op : FloatAcc {
  // x rows as bfloat16 pairs (one 32-bit word per group of two k).
  static __m512 step(__m512 acc, const void* x_row, int64_t g, const void* w) {
    const __m512i pair = _mm512_set1_epi32(static_cast<const int32_t*>(x_row)[g]);
    return _mm512_dpbf16_ps(acc, (__m512bh)pair, (__m512bh)_mm512_loadu_si512(w));
  }
  static constexpr int64_t kGroup = 2;
};

struct I8Op {
  // x rows as unsigned codes (signed code + 128), four k per 32-bit word; vpdpbusd is unsigned x signed.
  static __m512i step(__m512i acc, const void* x_row, int64_t g, const void* w) {
    return _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(static_cast<const int32_t*>(x_row)[g]), _mm512_loadu_si512(w));
  }
  static constexpr int64_t kGroup = 4;
  using Acc = __m512i;
  static Acc zero() { return _mm512_setzero_si512(); }
  static Acc add(Acc a, Acc b) { return _mm512_add_epi32(a, b); }
};

// Calls epilogue(row, panel, acc) for every row and panel with the panel's accumulated dot products.
template <typename Op, typename Epilogue>
void panel_loop(const PackedLinear& w, const uint8_t* x, int64_t x_row_bytes, int64_t row_begin, int64_t row_end,
                int64_t panel_begin, int64_t panel_end, Epilogue epilogue) {
  const int64_t groups = w.k_padded / Op::kGroup;
  const int8_t* base = w.kind == WeightKind::kFloat32 ? reinterpret_cast<const int8_t*>(w.f32.data())
                       : w.kind == WeightKind::kBFloat16 ? reinterpret_cast<const int8_t*>(w.bf16.data())
                                                         : w.i8.data();
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
            even[r] = Op::step(even[r], xr[r], g, w0);
            odd[r] = Op::step(odd[r], xr[r], g + 1, w0 + 64);
          }
        }
      }
      if (g < groups) {
#pragma GCC unroll 8
        for (int64_t r = 0; r < kRowBlock; ++r) {
          if (r < rows) even[r] = Op::step(even[r], xr[r], g, panel + g * 64);
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

// bias, activation and (for bfloat16 outputs) rounding, then one panel of row r to where `o` wants it.
void finish(const PackedLinear& w, int64_t r, int64_t p, __m512 v, Activation act, bool round_to_bf16,
            const PanelOutput& o) {
  const __mmask16 mask = column_mask(w, p);
  if (!w.bias.empty()) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, w.bias.data() + p * kPanel));
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
  } else if (o.mode == PanelOutput::kMax) {
    float* row = o.out + o.row_sequence[r] * w.n + p * kPanel;
    _mm512_mask_storeu_ps(row, mask, _mm512_max_ps(_mm512_maskz_loadu_ps(mask, row), v));
  } else {
    alignas(64) float lanes[kPanel];
    _mm512_store_ps(lanes, v);
    put_panel(o, w.n, r, p, lanes, w.n - p * kPanel < kPanel ? w.n - p * kPanel : kPanel);
  }
}

}  // namespace

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
    const auto* scales = reinterpret_cast<const float*>(scratch + m * w.k_padded * code_bytes(w));
    panel_loop<I8Op>(w, scratch, w.k_padded, row_begin, row_end, panel_begin, panel_end, [&](int64_t r, int64_t p, __m512i acc) {
      // The +128 shift added 128 * (sum of the column's weights) to each dot product.
      const __mmask16 mask = column_mask(w, p);
      const __m512i sums = _mm512_maskz_loadu_epi32(mask, w.column_sums.data() + p * kPanel);
      const __m512i exact = _mm512_sub_epi32(acc, _mm512_slli_epi32(sums, 7));
      const __m512 col = _mm512_maskz_loadu_ps(mask, w.column_scales.data() + p * kPanel);
      const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(_mm512_set1_ps(scales[r]), col));
      finish(w, r, p, v, act, false, out);
    });
  }
}

}  // namespace fastembed_rt::cpu::kernels
