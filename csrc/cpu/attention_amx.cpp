// The online softmax of attention.cpp with its two products on AMX tiles. Per tile of 16 queries and block
// of 128 keys: the scores are 16 x 16 float32 tiles (Q [16 x 32 dims] times K^T [32 dims x 16 keys], summed
// over the head's 32-dim chunks), four at a time, stored; each row's max, exponentials and sum in AVX-512 (the
// maxes, corrections and denominators of the 16 rows as vectors); the probabilities rounded to bfloat16 (as
// flash-attention does) and multiplied by V [32 keys x 16 dims] tile by tile into the running output, which is
// rescaled in memory between blocks (on the model-167 Xeon, 64-key blocks with the softmax bookkeeping row by row
// ran at 263 GFLOP/s, these at 457, heads of 32). Tile registers: 0 the A operand (queries, probabilities), 6 and 7
// the B operands in turn, 2-5 the float32 sums.
#include "attention_amx.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "amx.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")
#include <immintrin.h>

namespace fastembed_rt::cpu::kernels {
namespace {

constexpr int64_t kRows = kTileRows;  // queries per tile
constexpr int64_t kKeyTile = 16;       // keys per score tile: its 16 float32 columns
constexpr int64_t kOutTiles = 4;       // output tiles (16 dims each) per pass of P V: tile registers 2-5
constexpr int64_t kRowBytes = kTileRowBytes;

// e^x for x <= 0 to bfloat16's precision (relative error below 1e-4; the probabilities are rounded to 8 bits):
// a degree-4 polynomial on the reduced argument and the power of two by vscalefps, half exp_approx's work.
inline __m512 exp_probability(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182f), x);
  __m512 p = _mm512_set1_ps(1.0f / 24.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

struct Layout {
  int64_t padded, pairs, chunks;
  uint32_t* keys_t;    // [pairs][padded]: key j's dims (2p, 2p+1) in word p * padded + j (the B tiles of Q K^T)
  uint32_t* values_t;  // [padded / 2][dim]: keys (2kp, 2kp+1) of dim d in word kp * dim + d (the B tiles of P V)
  bf16* queries;       // [chunks][16][32]: one tile of queries, by 32-dim chunks (the A tiles of Q K^T)
  float* scores;       // [16][kAmxKeyBlock]
  bf16* probs;         // [16][kAmxKeyBlock] (the A tiles of P V)
  float* acc;          // [16][dim]: the running output
};

Layout layout(uint32_t* scratch, int64_t len, int64_t dim) {
  Layout l;
  l.padded = (len + kAmxKeyBlock - 1) / kAmxKeyBlock * kAmxKeyBlock;
  l.pairs = dim / 2;
  l.chunks = dim / kAmxDimChunk;
  l.keys_t = scratch;
  l.values_t = l.keys_t + l.pairs * l.padded;
  uint32_t* next = l.values_t + l.padded / 2 * dim;
  l.queries = reinterpret_cast<bf16*>(next);
  next += l.chunks * kRows * kAmxDimChunk / 2;
  l.scores = reinterpret_cast<float*>(next);
  next += kRows * kAmxKeyBlock;
  l.probs = reinterpret_cast<bf16*>(next);
  next += kRows * kAmxKeyBlock / 2;
  l.acc = reinterpret_cast<float*>(next);
  return l;
}

// Scores of the tile's queries against keys j0 .. j0 + 63, unscaled, into columns j0 - block .. + 63 of l.scores.
void score_tiles(const Layout& l, int64_t j0, int64_t block) {
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  const int64_t stride = l.padded * 4;
  for (int64_t c = 0; c < l.chunks; ++c) {
    _tile_loadd(0, l.queries + c * kRows * kAmxDimChunk, kRowBytes);
    const uint32_t* keys = l.keys_t + c * (kAmxDimChunk / 2) * l.padded + j0;
    _tile_loadd(6, keys, stride);
    _tile_dpbf16ps(2, 0, 6);
    _tile_loadd(7, keys + kKeyTile, stride);
    _tile_dpbf16ps(3, 0, 7);
    _tile_loadd(6, keys + 2 * kKeyTile, stride);
    _tile_dpbf16ps(4, 0, 6);
    _tile_loadd(7, keys + 3 * kKeyTile, stride);
    _tile_dpbf16ps(5, 0, 7);
  }
  constexpr int64_t row = kAmxKeyBlock * 4;
  float* scores = l.scores + (j0 - block);
  _tile_stored(2, scores, row);
  _tile_stored(3, scores + kKeyTile, row);
  _tile_stored(4, scores + 2 * kKeyTile, row);
  _tile_stored(5, scores + 3 * kKeyTile, row);
}

// acc += P V for the block of keys from j0, `tiles` (1 to 4) output tiles from dim 16 * first on.
void weigh_values(const Layout& l, int64_t dim, int64_t j0, int64_t first, int64_t tiles) {
  float* acc = l.acc + first * 16;
  const int64_t acc_stride = dim * 4;
  _tile_loadd(2, acc, acc_stride);
  if (tiles > 1) _tile_loadd(3, acc + 16, acc_stride);
  if (tiles > 2) _tile_loadd(4, acc + 32, acc_stride);
  if (tiles > 3) _tile_loadd(5, acc + 48, acc_stride);
  for (int64_t kc = 0; kc < kAmxKeyBlock / 32; ++kc) {
    _tile_loadd(0, l.probs + kc * 32, kAmxKeyBlock * 2);
    const uint32_t* values = l.values_t + (j0 / 2 + kc * 16) * dim + first * 16;
    _tile_loadd(6, values, acc_stride);
    _tile_dpbf16ps(2, 0, 6);
    if (tiles > 1) {
      _tile_loadd(7, values + 16, acc_stride);
      _tile_dpbf16ps(3, 0, 7);
    }
    if (tiles > 2) {
      _tile_loadd(6, values + 32, acc_stride);
      _tile_dpbf16ps(4, 0, 6);
    }
    if (tiles > 3) {
      _tile_loadd(7, values + 48, acc_stride);
      _tile_dpbf16ps(5, 0, 7);
    }
  }
  _tile_stored(2, acc, acc_stride);
  if (tiles > 1) _tile_stored(3, acc + 16, acc_stride);
  if (tiles > 2) _tile_stored(4, acc + 32, acc_stride);
  if (tiles > 3) _tile_stored(5, acc + 48, acc_stride);
}

constexpr int64_t kVectors = kAmxKeyBlock / 16;  // score vectors per row of a block

// The softmax of one block for all 16 rows: scores scaled and masked in place, each row's block max; then the
// 16 running maxes, corrections and denominators as vectors; then the probabilities (bfloat16, into l.probs) and
// the rescaled running outputs. Query i0 + r sees keys below limits[r].
void softmax_block(const Layout& l, int64_t dim, int64_t j0, const float* limits, float scale, float* running_max,
                   float* denominator) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 iota = _mm512_add_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                    _mm512_set1_ps(static_cast<float>(j0)));
  alignas(64) float block_max[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    float* scores = l.scores + r * kAmxKeyBlock;
    const __m512 limit = _mm512_set1_ps(limits[r]);
    __m512 m = neg_inf;
    for (int64_t t = 0; t < kVectors; ++t) {
      const __mmask16 seen = _mm512_cmp_ps_mask(_mm512_add_ps(iota, _mm512_set1_ps(16.0f * t)), limit, _CMP_LT_OQ);
      const __m512 s = _mm512_mask_mul_ps(neg_inf, seen, _mm512_loadu_ps(scores + 16 * t), _mm512_set1_ps(scale));
      _mm512_storeu_ps(scores + 16 * t, s);
      m = _mm512_max_ps(m, s);
    }
    block_max[r] = _mm512_reduce_max_ps(m);
  }
  // A row that sees no key of this block keeps its max (correction 1, probabilities 0); every row sees key 0
  // in the first block, so no max stays -inf past it (exp_probability(-inf) is a harmless ~1e-38 there).
  const __m512 old_max = _mm512_load_ps(running_max);
  const __m512 new_max = _mm512_max_ps(old_max, _mm512_load_ps(block_max));
  alignas(64) float correction[kRows];
  _mm512_store_ps(correction, exp_probability(_mm512_sub_ps(old_max, new_max)));
  _mm512_store_ps(running_max, new_max);
  alignas(64) float sums[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    const float* scores = l.scores + r * kAmxKeyBlock;
    bf16* probs = l.probs + r * kAmxKeyBlock;
    const __m512 max = _mm512_set1_ps(running_max[r]);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t t = 0; t < kVectors; ++t) {
      const __m512 s = _mm512_loadu_ps(scores + 16 * t);
      const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, neg_inf, _CMP_NEQ_OQ), exp_probability(_mm512_sub_ps(s, max)));
      sum = _mm512_add_ps(sum, p);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(probs + 16 * t), (__m256i)_mm512_cvtneps_pbh(p));
    }
    sums[r] = _mm512_reduce_add_ps(sum);
    if (correction[r] != 1.0f) {
      float* acc = l.acc + r * dim;
      const __m512 c = _mm512_set1_ps(correction[r]);
      for (int64_t d = 0; d < dim; d += 16) _mm512_storeu_ps(acc + d, _mm512_mul_ps(_mm512_loadu_ps(acc + d), c));
    }
  }
  _mm512_store_ps(denominator, _mm512_fmadd_ps(_mm512_load_ps(denominator), _mm512_load_ps(correction), _mm512_load_ps(sums)));
}

void attend_tile(const Layout& l, int64_t dim, int64_t len, int64_t i0, float scale, bool causal,
                 float* running_max, float* denominator) {
  for (int64_t i = 0; i < kRows * dim; ++i) l.acc[i] = 0.0f;
  alignas(64) float limits[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    running_max[r] = -std::numeric_limits<float>::infinity();
    denominator[r] = 0.0f;
    const int64_t i = std::min(i0 + r, len - 1);  // rows past the end: zero queries, seen as the last
    limits[r] = static_cast<float>(causal ? i + 1 : len);
  }
  const int64_t n_keys = causal ? std::min(len, i0 + kRows) : len;
  for (int64_t j0 = 0; j0 < n_keys; j0 += kAmxKeyBlock) {
    for (int64_t j = j0; j < j0 + kAmxKeyBlock; j += 4 * kKeyTile) score_tiles(l, j, j0);
    softmax_block(l, dim, j0, limits, scale, running_max, denominator);
    for (int64_t first = 0; first < dim / 16; first += kOutTiles) {
      weigh_values(l, dim, j0, first, std::min(kOutTiles, dim / 16 - first));
    }
  }
}

}  // namespace

int64_t amx_scratch_words(int64_t len, int64_t dim) {
  const int64_t padded = (len + kAmxKeyBlock - 1) / kAmxKeyBlock * kAmxKeyBlock;
  return dim * padded + dim / kAmxDimChunk * kRows * kAmxDimChunk / 2 + kRows * kAmxKeyBlock * 3 / 2 + kRows * dim;
}

void attend_item_amx(const bf16* q, const bf16* k, const bf16* v, bf16* out, const int32_t* cu_seqlens,
                     const AttentionShape& sh, float scale, bool causal, int64_t seq, int64_t kv_head,
                     uint32_t* scratch) {
  const int64_t start = cu_seqlens[seq], len = cu_seqlens[seq + 1] - start, dim = sh.head_dim;
  if (len == 0) return;
  const Layout l = layout(scratch, len, dim);
  for (int64_t j = 0; j < l.padded; ++j) {
    const bf16* kr = j < len ? k + (start + j) * sh.k_token_stride + kv_head * dim : nullptr;
    for (int64_t p = 0; p < l.pairs; ++p) l.keys_t[p * l.padded + j] = kr ? bf16_pair(kr + 2 * p) : 0;
  }
  for (int64_t kp = 0; kp < l.padded / 2; ++kp) {
    const int64_t j = 2 * kp;
    const bf16* v0 = j < len ? v + (start + j) * sh.v_token_stride + kv_head * dim : nullptr;
    const bf16* v1 = j + 1 < len ? v0 + sh.v_token_stride : nullptr;
    uint32_t* row = l.values_t + kp * dim;
    for (int64_t d = 0; d < dim; ++d) row[d] = (v0 ? v0[d].bits : 0u) | (v1 ? static_cast<uint32_t>(v1[d].bits) << 16 : 0u);
  }
  configure_tiles();
  alignas(64) float running_max[kRows], denominator[kRows];
  const int64_t group = sh.num_heads / sh.num_kv_heads;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = 0; i0 < len; i0 += kRows) {
      const int64_t rows = std::min(kRows, len - i0);
      for (int64_t r = 0; r < kRows; ++r) {
        const bf16* qr = r < rows ? q + (start + i0 + r) * sh.q_token_stride + h * dim : nullptr;
        for (int64_t c = 0; c < l.chunks; ++c) {
          bf16* tile_row = l.queries + (c * kRows + r) * kAmxDimChunk;
          if (qr) {
            std::memcpy(tile_row, qr + c * kAmxDimChunk, kAmxDimChunk * sizeof(bf16));
          } else {
            std::memset(tile_row, 0, kAmxDimChunk * sizeof(bf16));
          }
        }
      }
      attend_tile(l, dim, len, i0, scale, causal, running_max, denominator);
      for (int64_t r = 0; r < rows; ++r) {
        const __m512 inverse = _mm512_set1_ps(1.0f / denominator[r]);
        bf16* o = out + ((start + i0 + r) * sh.num_heads + h) * dim;
        for (int64_t d = 0; d < dim; d += 16) {
          const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(l.acc + r * dim + d), inverse);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + d), (__m256i)_mm512_cvtneps_pbh(x));
        }
      }
    }
  }
  _tile_release();
}

}  // namespace fastembed_rt::cpu::kernels
