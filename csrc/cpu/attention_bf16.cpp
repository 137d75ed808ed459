// The tile loop of attention.cpp (16 queries as lanes, 16 keys per block, online softmax without
// horizontal reductions) with its two products on bfloat16 pairs: scores by vdpbf16ps over pairs of head
// dimensions, and P V over pairs of keys, the probabilities rounded to bfloat16 as flash-attention does.
#include <cstring>
#include <limits>

#include "attention_bf16.h"
#include "cpu_features.h"
#include "isa.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
#include <immintrin.h>

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int64_t kValueChunk = 8;

// exp_approx (vector_math.h) on a register: __m512 and Float16 are the same GCC vector type.
inline __m512 exp16(__m512 x) { return exp_approx(Float16(x)); }

// Lane i: bfloat16(lo[i]) in the low half, bfloat16(hi[i]) in the high half (round to nearest even).
inline __m512i pack_pairs(__m512 lo, __m512 hi) {
  auto round = [](__m512 v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  };
  return _mm512_or_si512(_mm512_srli_epi32(round(lo), 16),
                         _mm512_and_si512(round(hi), _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u))));
}

// kDim: the head size when known at compile time (then the value accumulators stay in registers), else 0.
template <int64_t kDim>
void attend_item(const bf16* q, const bf16* k, const bf16* v, bf16* out, const int32_t* cu_seqlens,
                 const AttentionShape& sh, float scale, bool causal, int64_t seq, int64_t kv_head, uint32_t* scratch) {
  const int64_t start = cu_seqlens[seq], len = cu_seqlens[seq + 1] - start;
  const int64_t dim = kDim ? kDim : sh.head_dim, pairs = dim / 2;
  if (len == 0) return;
  const int64_t padded = bf16_padded(len), key_pairs = padded / 2;
  uint32_t* keys = scratch;                              // [padded][pairs]
  uint32_t* values_t = keys + padded * pairs;            // [dim][key_pairs]
  uint32_t* queries = values_t + dim * key_pairs;        // [pairs][16]
  float* acc = reinterpret_cast<float*>(queries + pairs * kBf16Rows);  // [dim][16]
  for (int64_t t = 0; t < padded; ++t) {
    if (t < len) {
      std::memcpy(keys + t * pairs, k + (start + t) * sh.k_token_stride + kv_head * dim, dim * 2);
    } else {
      std::memset(keys + t * pairs, 0, pairs * 4);
    }
  }
  for (int64_t jp = 0; jp < key_pairs; ++jp) {
    const int64_t j = 2 * jp;
    const bf16* v0 = v + (start + j) * sh.v_token_stride + kv_head * dim;
    const bf16* v1 = v0 + sh.v_token_stride;
    for (int64_t d = 0; d < dim; ++d) {
      const uint32_t lo = j < len ? v0[d].bits : 0, hi = j + 1 < len ? v1[d].bits : 0;
      values_t[d * key_pairs + jp] = lo | (hi << 16);
    }
  }
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t group = sh.num_heads / sh.num_kv_heads;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = 0; i0 < len; i0 += kBf16Rows) {
      alignas(64) float limit_lanes[kBf16Rows];
      for (int64_t r = 0; r < kBf16Rows; ++r) {
        const int64_t i = i0 + r < len ? i0 + r : len - 1;  // rows past the end repeat the last query
        const bf16* qr = q + (start + i) * sh.q_token_stride + h * dim;
        for (int64_t p = 0; p < pairs; ++p) queries[p * kBf16Rows + r] = bf16_pair(qr + 2 * p);
        limit_lanes[r] = static_cast<float>(causal ? i + 1 : len);
      }
      const __m512 limit = _mm512_load_ps(limit_lanes);
      const int64_t n_keys = causal ? (len < i0 + kBf16Rows ? len : i0 + kBf16Rows) : len;
      __m512 running_max = neg_inf, denominator = _mm512_setzero_ps();
      for (int64_t d = 0; d < dim; ++d) _mm512_storeu_ps(acc + d * kBf16Rows, _mm512_setzero_ps());
      for (int64_t j0 = 0; j0 < n_keys; j0 += kBf16Keys) {
        __m512 s[kBf16Keys];
        for (int64_t j = 0; j < kBf16Keys; ++j) s[j] = _mm512_setzero_ps();
        for (int64_t p = 0; p < pairs; ++p) {
          const __m512bh qv = (__m512bh)_mm512_loadu_si512(queries + p * kBf16Rows);
#pragma GCC unroll 16
          for (int64_t j = 0; j < kBf16Keys; ++j) {
            s[j] = _mm512_dpbf16_ps(s[j], qv, (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(keys[(j0 + j) * pairs + p])));
          }
        }
        __mmask16 visible[kBf16Keys];
        __m512 block_max = neg_inf;
        for (int64_t j = 0; j < kBf16Keys; ++j) {
          visible[j] = _mm512_cmp_ps_mask(_mm512_set1_ps(static_cast<float>(j0 + j)), limit, _CMP_LT_OQ);
          s[j] = _mm512_mask_mul_ps(neg_inf, visible[j], s[j], _mm512_set1_ps(scale));
          block_max = _mm512_max_ps(block_max, s[j]);
        }
        // Every query sees key 0, so after the first block every running max is finite.
        const __m512 new_max = _mm512_max_ps(running_max, block_max);
        const __m512 correction = exp16(_mm512_sub_ps(running_max, new_max));
        running_max = new_max;
        denominator = _mm512_mul_ps(denominator, correction);
        for (int64_t j = 0; j < kBf16Keys; ++j) {
          s[j] = _mm512_maskz_mov_ps(visible[j], exp16(_mm512_sub_ps(s[j], running_max)));
          denominator = _mm512_add_ps(denominator, s[j]);
        }
        __m512bh probabilities[kBf16Keys / 2];
        for (int64_t jp = 0; jp < kBf16Keys / 2; ++jp) probabilities[jp] = (__m512bh)pack_pairs(s[2 * jp], s[2 * jp + 1]);
        const uint32_t* vt = values_t + j0 / 2;
        for (int64_t d0 = 0; d0 < dim; d0 += kValueChunk) {
          const int64_t width = kDim % kValueChunk == 0 && kDim ? kValueChunk : (dim - d0 < kValueChunk ? dim - d0 : kValueChunk);
          __m512 o[kValueChunk];
          for (int64_t d = 0; d < width; ++d) o[d] = _mm512_mul_ps(_mm512_loadu_ps(acc + (d0 + d) * kBf16Rows), correction);
          for (int64_t jp = 0; jp < kBf16Keys / 2; ++jp) {
#pragma GCC unroll 8
            for (int64_t d = 0; d < width; ++d) {
              o[d] = _mm512_dpbf16_ps(o[d], probabilities[jp],
                                      (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(vt[(d0 + d) * key_pairs + jp])));
            }
          }
          for (int64_t d = 0; d < width; ++d) _mm512_storeu_ps(acc + (d0 + d) * kBf16Rows, o[d]);
        }
      }
      const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(1.0f), denominator);
      alignas(64) float lanes[kBf16Rows];
      for (int64_t d = 0; d < dim; ++d) {
        _mm512_store_ps(lanes, _mm512_mul_ps(_mm512_loadu_ps(acc + d * kBf16Rows), inverse));
        for (int64_t r = 0; r < kBf16Rows && i0 + r < len; ++r) {
          uint32_t bits;
          std::memcpy(&bits, lanes + r, 4);
          bits += 0x7FFFu + ((bits >> 16) & 1u);
          out[((start + i0 + r) * sh.num_heads + h) * dim + d].bits = static_cast<uint16_t>(bits >> 16);
        }
      }
    }
  }
}

}  // namespace

bool bf16_dot_supported() {
  const CpuFeatures& f = cpu_features();
  return active_isa() == Isa::kAvx512 && f.avx512_bf16;
}

void attend_item_bf16_dot(const bf16* q, const bf16* k, const bf16* v, bf16* out, const int32_t* cu_seqlens,
                          const AttentionShape& shape, float scale, bool causal, int64_t seq, int64_t kv_head,
                          uint32_t* scratch) {
  switch (shape.head_dim) {
    case 32:
      return attend_item<32>(q, k, v, out, cu_seqlens, shape, scale, causal, seq, kv_head, scratch);
    case 64:
      return attend_item<64>(q, k, v, out, cu_seqlens, shape, scale, causal, seq, kv_head, scratch);
    case 128:
      return attend_item<128>(q, k, v, out, cu_seqlens, shape, scale, causal, seq, kv_head, scratch);
    default:
      return attend_item<0>(q, k, v, out, cu_seqlens, shape, scale, causal, seq, kv_head, scratch);
  }
}

}  // namespace fastembed_rt::cpu::kernels
