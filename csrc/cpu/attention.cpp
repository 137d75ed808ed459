#include "attention.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu_features.h"

#include "attention_amx.h"
#include "attention_bf16.h"
#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

// A tile of kRows queries meets the keys in a layout transposed so that the vector lanes run across the
// tile's queries: each query's max, denominator and rescaling are then plain lane-wise operations, and no
// step of the softmax needs a horizontal reduction. Register tiles: kKeys scores at a time (one accumulator
// each), kValueChunk output dimensions at a time. Loops over the score and output registers are unrolled, so that
// the arrays stay in registers.
template <int64_t kLanesN, int64_t kVecsN, int64_t kKeysN, int64_t kValueChunkN>
struct Tile {
  static constexpr int64_t kLanes = kLanesN;  // queries per register
  static constexpr int64_t kVecs = kVecsN;    // registers of queries
  static constexpr int64_t kRows = kLanes * kVecs;
  static constexpr int64_t kKeys = kKeysN;
  static constexpr int64_t kValueChunk = kValueChunkN;
  using Lanes = typename ::fastembed_rt::cpu::Lanes<kLanes>::type;
};
// AVX-512: a zmm of queries x 8 keys x 8 dimensions. On the model-167 Xeon, 16 zmm lanes ran 512-token sequences
// 1.36x faster than 8 ymm lanes; 16 keys or 16 dimensions per register tile were no faster.
using ZmmTile = Tile<16, 1, 8, 8>;
// AVX2: two ymm of queries x 4 keys x 4 dimensions, 8 accumulators. Each key (value) is broadcast from memory, as
// AVX2 has no broadcast operand: one ymm of queries x 8 keys loaded 9 times per 8 FMAs, this 6 per 8. With the
// output rows written as attend_item does, MiniLM's 12 heads of 32 on every fifth 4,096-token batch of the bench
// corpus (Zen 3 EPYC, 2 threads, best of 12) took 110-112 ms against 121-127 ms before (one ymm x 8 keys).
using YmmPairTile = Tile<8, 2, 4, 4>;
// One ymm of queries x 8 keys x 8 dimensions: AVX-512's and AVX2's tile for short sequences (attend_sized).
using YmmTile = Tile<8, 1, 8, 8>;
using XmmTile = Tile<4, 1, 8, 8>;  // baseline x86-64
constexpr int64_t kMaxRows = 16;
// Keys per softmax block: its scores, [kKeyBlock][kRows] floats (16 or 32 KiB), stay in L1 between the passes
// (256 or 128 keys were no faster).
constexpr int64_t kKeyBlock = 512;

template <typename T>
struct AttentionArgs {
  const T *q, *k, *v;
  T* out;
  const int32_t* cu_seqlens;
  AttentionShape shape;
  float scale;
  bool causal;
  AttentionExtras extras;
};

// Per-thread float32 copies of one (sequence, kv head) zero-padded to whole key blocks; one head's queries,
// tile by tile; one tile's outputs ([dim][query lane], then as rows: rows_out), its scores for one block of keys
// and its relative position bias [key][query lane].
struct Scratch {
  std::vector<float> keys, values, queries_t, acc_t, bias_t, scores_t, rows_out;
};

// A head's rows of q, k and v are a token stride apart (several KiB: all heads, and in a fused QKV tensor all
// three), too far for the hardware prefetchers: each row read missed the caches. So the row kPrefetchRows
// ahead is requested while this one is copied (MiniLM's QKV, 32 x 128 tokens under AVX2: 1.25x; 4 to 32 rows
// ahead all did as well).
constexpr int64_t kPrefetchRows = 8;

template <typename T, bool kForWriting = false>
FE_INLINE void prefetch_row(const T* row, int64_t elements) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t at = 0; at < elements * static_cast<int64_t>(sizeof(T)); at += 64) __builtin_prefetch(bytes + at, kForWriting);
}

template <typename V>
FE_INLINE V load_lanes(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename V>
FE_INLINE void store_lanes(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

// 8 x 8 blocks between a head's rows and the tiles' transposed layouts: the scalar copies, one element per store,
// took 6-12% of MiniLM's attention (32 x 128 tokens, 12 heads of 32, one thread, AVX2 EPYC: the time saved when
// they were left out).
using Block8 = Lanes<8>::type;
using Mask8 = Lanes<8>::int_type;

// An 8 x 8 block transposed in place: afterwards lane j of m[i] is what lane i of m[j] was. Three rounds of
// two-vector shuffles (32-bit unpacks, 64-bit unpacks, 128-bit halves).
FE_INLINE void transpose8x8(Block8 (&m)[8]) {
  Block8 a[8], b[8];
  for (int j = 0; j < 8; j += 2) {
    a[j] = __builtin_shuffle(m[j], m[j + 1], Mask8{0, 8, 1, 9, 4, 12, 5, 13});
    a[j + 1] = __builtin_shuffle(m[j], m[j + 1], Mask8{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int j = 0; j < 8; j += 4) {
    for (int h = 0; h < 2; ++h) {
      b[j + 2 * h] = __builtin_shuffle(a[j + h], a[j + h + 2], Mask8{0, 1, 8, 9, 4, 5, 12, 13});
      b[j + 2 * h + 1] = __builtin_shuffle(a[j + h], a[j + h + 2], Mask8{2, 3, 10, 11, 6, 7, 14, 15});
    }
  }
  for (int i = 0; i < 4; ++i) {
    m[i] = __builtin_shuffle(b[i], b[i + 4], Mask8{0, 1, 2, 3, 8, 9, 10, 11});
    m[i + 4] = __builtin_shuffle(b[i], b[i + 4], Mask8{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

FE_INLINE Block8 load8(const float* p) { return load_lanes<Block8>(p); }
FE_INLINE Block8 load8(const bf16* p) {
  typedef uint16_t Half8 __attribute__((vector_size(16)));
  Half8 h;
  std::memcpy(&h, p, sizeof h);
  const Mask8 bits = __builtin_convertvector(h, Mask8) << 16;
  Block8 v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Softmax attention for one tile: queries_t [dim][kRows] (pre-scaled), keys and values [padded_len][dim];
// query r sees keys lower[r] <= j < limit[r], from key j_start on, with bias_t [key][kRows] added when given.
// Leaves softmax(q K^T) V transposed in acc_t [dim][kRows]. Keys go by blocks of up to kKeyBlock, each in three
// passes: scores into scores_t (and the block's max), their exponentials, then the values they weigh. Three
// passes keep every register tile a plain GEMM tile with independent accumulators: the one-pass online
// softmax over 8 keys at a time rescaled the outputs after every 8 keys and chained each output register
// through 8 dependent FMAs. The running max and denominator carry the online softmax across blocks.
template <typename TileT, int64_t kDim>
FE_INLINE void attend_tile(const float* keys, const float* values, int64_t dim_runtime, const float* queries_t,
                           const float* lower_ptr, const float* limit_ptr, int64_t j_start, int64_t n_keys,
                           const float* bias_t, float* acc_t, float* scores_t) {
  using Lanes = typename TileT::Lanes;
  constexpr int64_t kLanes = TileT::kLanes, kVecs = TileT::kVecs, kRows = TileT::kRows;
  constexpr int64_t kKeys = TileT::kKeys, kValueChunk = TileT::kValueChunk;
  const int64_t dim = kDim ? kDim : dim_runtime;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kLog2e = 1.44269504088896341f;
  // Per-query state, one register per kLanes queries.
  Lanes lower[kVecs], limit[kVecs], running_max[kVecs], denominator[kVecs], block_max[kVecs], safe_max[kVecs],
      correction[kVecs], max_log2e[kVecs];
  // e^(s - max) as 2^(s log2(e) - max log2(e)): one FMA, and the power of two's own exponent field
  #pragma GCC unroll 4
  for (int64_t v = 0; v < kVecs; ++v) {
    lower[v] = load_lanes<Lanes>(lower_ptr + v * kLanes);
    limit[v] = load_lanes<Lanes>(limit_ptr + v * kLanes);
    running_max[v] = Lanes{} + kNegInf;
    denominator[v] = Lanes{};
  }
  // Keys in [all_from, all_to) are seen by every query of the tile: their blocks need no mask.
  const float all_from = *std::max_element(lower_ptr, lower_ptr + kRows);
  const float all_to = *std::min_element(limit_ptr, limit_ptr + kRows);
  for (int64_t i = 0; i < dim * kRows; ++i) acc_t[i] = 0.0f;
  for (int64_t b0 = j_start; b0 < n_keys; b0 += kKeyBlock) {
    const int64_t b1 = b0 + (std::min(n_keys - b0, kKeyBlock) + kKeys - 1) / kKeys * kKeys;  // whole key blocks
    #pragma GCC unroll 4
    for (int64_t v = 0; v < kVecs; ++v) block_max[v] = Lanes{} + kNegInf;
    for (int64_t j0 = b0; j0 < b1; j0 += kKeys) {
      Lanes s[kKeys][kVecs];
      #pragma GCC unroll 16
      for (int64_t j = 0; j < kKeys; ++j) {
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) {
          s[j][v] = bias_t ? load_lanes<Lanes>(bias_t + (j0 + j) * kRows + v * kLanes) : Lanes{};
        }
      }
      for (int64_t d = 0; d < dim; ++d) {
        Lanes q[kVecs];
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) q[v] = load_lanes<Lanes>(queries_t + d * kRows + v * kLanes);
        #pragma GCC unroll 16
        for (int64_t j = 0; j < kKeys; ++j) {
          const float key = keys[(j0 + j) * dim + d];
          #pragma GCC unroll 4
          for (int64_t v = 0; v < kVecs; ++v) s[j][v] += q[v] * key;
        }
      }
      const bool unmasked = j0 >= all_from && j0 + kKeys <= all_to;
      #pragma GCC unroll 16
      for (int64_t j = 0; j < kKeys; ++j) {
        const float key = static_cast<float>(j0 + j);
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) {
          if (!unmasked) s[j][v] = (key >= lower[v]) & (key < limit[v]) ? s[j][v] : kNegInf;
          block_max[v] = block_max[v] > s[j][v] ? block_max[v] : s[j][v];
          store_lanes(scores_t + (j0 - b0 + j) * kRows + v * kLanes, s[j][v]);
        }
      }
    }
    // A lane that has seen no key yet (a window starting later, a causal row ending earlier) keeps its max at
    // 0, not -inf (no NaN).
    #pragma GCC unroll 4
    for (int64_t v = 0; v < kVecs; ++v) {
      const Lanes new_max = running_max[v] > block_max[v] ? running_max[v] : block_max[v];
      safe_max[v] = new_max == kNegInf ? Lanes{} : new_max;
      correction[v] = exp_approx(running_max[v] - safe_max[v]);
      running_max[v] = new_max;
      denominator[v] *= correction[v];
      max_log2e[v] = safe_max[v] * kLog2e;
    }
    for (int64_t j = 0; j < b1 - b0; ++j) {
      #pragma GCC unroll 4
      for (int64_t v = 0; v < kVecs; ++v) {
        const Lanes s = load_lanes<Lanes>(scores_t + j * kRows + v * kLanes);
        const Lanes p = s == kNegInf ? Lanes{} : exp2_nonpositive(s * kLog2e - max_log2e[v]);
        denominator[v] += p;
        store_lanes(scores_t + j * kRows + v * kLanes, p);
      }
    }
    for (int64_t d0 = 0; d0 < dim; d0 += kValueChunk) {
      const int64_t width = kDim % kValueChunk == 0 && kDim ? kValueChunk : std::min(kValueChunk, dim - d0);
      Lanes o[kValueChunk][kVecs];
      #pragma GCC unroll 16
      for (int64_t d = 0; d < width; ++d) {
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) o[d][v] = load_lanes<Lanes>(acc_t + (d0 + d) * kRows + v * kLanes) * correction[v];
      }
      for (int64_t j = b0; j < b1; ++j) {
        Lanes p[kVecs];
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) p[v] = load_lanes<Lanes>(scores_t + (j - b0) * kRows + v * kLanes);
        const float* value = values + j * dim + d0;
        #pragma GCC unroll 16
        for (int64_t d = 0; d < width; ++d) {
          const float x = value[d];
          #pragma GCC unroll 4
          for (int64_t v = 0; v < kVecs; ++v) o[d][v] += p[v] * x;
        }
      }
      #pragma GCC unroll 16
      for (int64_t d = 0; d < width; ++d) {
        #pragma GCC unroll 4
        for (int64_t v = 0; v < kVecs; ++v) store_lanes(acc_t + (d0 + d) * kRows + v * kLanes, o[d][v]);
      }
    }
  }
  for (int64_t d = 0; d < dim; ++d) {
    #pragma GCC unroll 4
    for (int64_t v = 0; v < kVecs; ++v) {
      float* at = acc_t + d * kRows + v * kLanes;
      store_lanes(at, load_lanes<Lanes>(at) / denominator[v]);
    }
  }
}

// All query heads sharing kv head `kv_head` of sequence `seq`.
template <typename TileT, typename T, int64_t kDim>
FE_INLINE void attend_item(const AttentionArgs<T>& a, int64_t seq, int64_t kv_head, Scratch& w) {
  constexpr int64_t kRows = TileT::kRows, kKeys = TileT::kKeys;
  // Rows per block of the transposes into and out of the tile layout: 8 x 8 shuffled blocks where tiles are whole
  // blocks of 8, else one row at a time.
  constexpr int64_t kBlockRows = kRows % 8 == 0 ? 8 : 1;
  const AttentionShape& sh = a.shape;
  const int64_t start = a.cu_seqlens[seq], len = a.cu_seqlens[seq + 1] - start, dim = sh.head_dim;
  if (len == 0) return;
  const int64_t padded = (len + kKeys - 1) / kKeys * kKeys;
  w.keys.resize(padded * dim);
  std::fill(w.keys.begin() + len * dim, w.keys.end(), 0.0f);
  w.values.resize(padded * dim);
  std::fill(w.values.begin() + len * dim, w.values.end(), 0.0f);
  const int64_t query_rows = (len + kRows - 1) / kRows * kRows;  // whole tiles
  w.queries_t.resize(query_rows * dim);
  w.acc_t.resize(dim * kRows);
  w.rows_out.resize(dim * kRows);
  w.scores_t.resize(kKeyBlock * kRows);
  for (int64_t t = 0; t < len; ++t) {
    const T* kr = a.k + (start + t) * sh.k_token_stride + kv_head * dim;
    const T* vr = a.v + (start + t) * sh.v_token_stride + kv_head * dim;
    if (t + kPrefetchRows < len) {
      prefetch_row(kr + kPrefetchRows * sh.k_token_stride, dim);
      prefetch_row(vr + kPrefetchRows * sh.v_token_stride, dim);
    }
    float* kd = w.keys.data() + t * dim;
    for (int64_t d = 0; d < dim; ++d) kd[d] = to_float(kr[d]);
    float* vd = w.values.data() + t * dim;
    for (int64_t d = 0; d < dim; ++d) vd[d] = to_float(vr[d]);
  }
  const int64_t group = sh.num_heads / sh.num_kv_heads;
  const AttentionExtras& x = a.extras;
  const int64_t key_count = x.key_lengths ? x.key_lengths[seq] : len;  // keys: a prefix of the sequence
  const int64_t left = x.window_left < 0 ? len : x.window_left;
  const int64_t right = a.causal ? 0 : (x.window_right < 0 ? len : x.window_right);
  if (x.relative_bias) w.bias_t.resize(padded * kRows);
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    // The head's queries, tile by tile as [dim][kRows], all written before the first tile reads them: a vector
    // load right after the 8 scalar stores that wrote it stalls on store forwarding. Rows past the sequence's
    // end repeat its last query; they are computed but never stored.
    for (int64_t i0 = 0; i0 < query_rows; i0 += kBlockRows) {
      const T* qr[kBlockRows];
      for (int64_t j = 0; j < kBlockRows; ++j) {
        qr[j] = a.q + (start + std::min(i0 + j, len - 1)) * sh.q_token_stride + h * dim;
        if (i0 + j + kPrefetchRows < len) prefetch_row(qr[j] + kPrefetchRows * sh.q_token_stride, dim);
      }
      float* tile = w.queries_t.data() + i0 / kRows * dim * kRows + i0 % kRows;
      int64_t d0 = 0;
      if constexpr (kBlockRows == 8) {
        for (; d0 + 8 <= dim; d0 += 8) {
          Block8 m[8];
          for (int j = 0; j < 8; ++j) m[j] = load8(qr[j] + d0);
          transpose8x8(m);
          for (int k = 0; k < 8; ++k) store_lanes(tile + (d0 + k) * kRows, m[k] * a.scale);
        }
      }
      for (int64_t j = 0; j < kBlockRows; ++j) {
        for (int64_t d = d0; d < dim; ++d) tile[d * kRows + j] = to_float(qr[j][d]) * a.scale;
      }
    }
    for (int64_t i0 = 0; i0 < len; i0 += kRows) {
      const int64_t rows = std::min(kRows, len - i0);
      alignas(64) float lower[kMaxRows], limit[kMaxRows];
      for (int64_t r = 0; r < kRows; ++r) {
        const int64_t i = std::min(i0 + r, len - 1);
        lower[r] = static_cast<float>(std::max<int64_t>(0, i - left));
        limit[r] = static_cast<float>(std::min(key_count, i + right + 1));
      }
      const int64_t j_start = std::max<int64_t>(0, i0 - left) / kKeys * kKeys;
      const int64_t n_keys = std::min(key_count, i0 + rows - 1 + right + 1);
      const float* bias_t = nullptr;
      if (x.relative_bias) {
        const float* row = x.relative_bias + h * (2 * x.bias_radius + 1) + x.bias_radius;
        for (int64_t j = j_start; j < (n_keys + kKeys - 1) / kKeys * kKeys; ++j) {
          for (int64_t r = 0; r < kRows; ++r) {
            const int64_t offset = std::clamp<int64_t>(j - std::min(i0 + r, len - 1), -x.bias_radius, x.bias_radius);
            w.bias_t[j * kRows + r] = row[offset];
          }
        }
        bias_t = w.bias_t.data();
      }
      // The tile's output rows, a token stride apart and not in cache yet, are fetched for writing while it computes.
      for (int64_t r = 0; r < rows; ++r) prefetch_row<T, true>(a.out + ((start + i0 + r) * sh.num_heads + h) * dim, dim);
      attend_tile<TileT, kDim>(w.keys.data(), w.values.data(), dim, w.queries_t.data() + i0 * dim, lower, limit, j_start, n_keys, bias_t,
                                      w.acc_t.data(), w.scores_t.data());
      // Transposed back to rows in L1 first, so that each output row is written whole by vector stores: a row's
      // scalar stores, one per dimension, stalled on the lines they missed.
      float* rows_out = w.rows_out.data();
      for (int64_t r0 = 0; r0 < rows; r0 += kBlockRows) {
        int64_t d0 = 0;
        if constexpr (kBlockRows == 8) {
          for (; d0 + 8 <= dim; d0 += 8) {
            Block8 m[8];
            for (int k = 0; k < 8; ++k) m[k] = load8(w.acc_t.data() + (d0 + k) * kRows + r0);
            transpose8x8(m);
            for (int j = 0; j < 8; ++j) store_lanes(rows_out + (r0 + j) * dim + d0, m[j]);
          }
        }
        for (int64_t r = r0; r < r0 + kBlockRows; ++r) {
          for (int64_t d = d0; d < dim; ++d) rows_out[r * dim + d] = w.acc_t[d * kRows + r];
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        T* out = a.out + ((start + i0 + r) * sh.num_heads + h) * dim;
        for (int64_t d = 0; d < dim; ++d) out[d] = from_float<T>(rows_out[r * dim + d]);
      }
    }
  }
}

// Common head sizes get a loop nest with the head dimension known at compile time.
template <typename TileT, typename T>
FE_INLINE void attend_item(const AttentionArgs<T>& a, int64_t seq, int64_t kv_head, Scratch& w) {
  switch (a.shape.head_dim) {
    case 32:
      return attend_item<TileT, T, 32>(a, seq, kv_head, w);
    case 64:
      return attend_item<TileT, T, 64>(a, seq, kv_head, w);
    case 128:
      return attend_item<TileT, T, 128>(a, seq, kv_head, w);
    default:
      return attend_item<TileT, T, 0>(a, seq, kv_head, w);
  }
}

// The build's tile (kVectorBytes: its vector width). A sequence under 64 tokens that 16-query tiles would pad to more
// rows than 8-query ones takes 8-query tiles: with AVX-512, 4,096 tokens of 20-token sequences, 12 heads of 32, ran
// in 3.3 ms against 4.3 ms.
template <int kVectorBytes, typename T>
FE_INLINE void attend_sized(const AttentionArgs<T>& a, int64_t seq, int64_t kv_head, Scratch& w) {
  if constexpr (kVectorBytes == 16) {
    return attend_item<XmmTile>(a, seq, kv_head, w);
  } else {
    using Wide = std::conditional_t<kVectorBytes == 64, ZmmTile, YmmPairTile>;
    constexpr int64_t kWide = Wide::kRows, kNarrow = YmmTile::kRows;
    const int64_t len = a.cu_seqlens[seq + 1] - a.cu_seqlens[seq];
    const bool pads_more = (len + kWide - 1) / kWide * kWide > (len + kNarrow - 1) / kNarrow * kNarrow;
    if (len < 64 && pads_more) return attend_item<YmmTile>(a, seq, kv_head, w);
    attend_item<Wide>(a, seq, kv_head, w);
  }
}

FE_ISA_DISPATCH(void, attend_one, (const AttentionArgs<float>& a, int64_t s, int64_t h, Scratch& w), (a, s, h, w),
                attend_sized<kVectorBytes>(a, s, h, w))
FE_ISA_DISPATCH(void, attend_one, (const AttentionArgs<bf16>& a, int64_t s, int64_t h, Scratch& w), (a, s, h, w),
                attend_sized<kVectorBytes>(a, s, h, w))

}  // namespace

bool bf16_kernel_applies(Bf16Products kernel, const AttentionShape& shape, const AttentionExtras& extras) {
  const bool plain = extras.window_left < 0 && extras.window_right < 0 && !extras.relative_bias && !extras.key_lengths;
  switch (kernel) {
    case Bf16Products::kAmx:
      return plain && shape.head_dim % kernels::kAmxDimChunk == 0 && kernels::amx_bf16_ready();
    case Bf16Products::kDot:
      return plain && shape.head_dim % 2 == 0 && kernels::bf16_dot_supported();
    default:
      return true;
  }
}

Bf16Products bf16_cpu_choice() {
  if (kernels::amx_bf16_ready()) return Bf16Products::kAmx;
  if (kernels::bf16_dot_supported() && cpu_features().amd) return Bf16Products::kDot;
  return Bf16Products::kWidened;
}

namespace {
// The kernel for these bfloat16 inputs: the one asked for, else the CPU's choice where it applies, else widening.
Bf16Products bf16_kernel(const AttentionShape& shape, const AttentionExtras& extras) {
  if (extras.bf16_products != Bf16Products::kCpuChoice) return extras.bf16_products;
  const Bf16Products choice = bf16_cpu_choice();
  return bf16_kernel_applies(choice, shape, extras) ? choice : Bf16Products::kWidened;
}

// The (sequence, kv head) items through `attend(worker, seq, kv_head, words)`, each worker with scratch_words for
// the longest sequence.
template <typename Attend>
void run_items(const AttentionShape& shape, const int32_t* cu_seqlens, int threads,
               int64_t (*scratch_words)(int64_t, int64_t), Attend attend) {
  int64_t longest = 0;
  for (int64_t s = 0; s < shape.num_seqs; ++s) longest = std::max<int64_t>(longest, cu_seqlens[s + 1] - cu_seqlens[s]);
  std::vector<std::vector<uint32_t>> scratch(threads, std::vector<uint32_t>(scratch_words(longest, shape.head_dim)));
  parallel_for_each(shape.num_seqs * shape.num_kv_heads, threads, [&](int worker, int64_t item) {
    attend(worker, item / shape.num_kv_heads, item % shape.num_kv_heads, scratch[worker].data());
  });
}

// Sequences shorter than this take the widened kernel even where AMX runs: a tile pads them to 16 queries and
// 128 keys (model-167 Xeon, 2 threads, 12 heads of 32: AMX took 3.2x the widened kernel's time at 16 tokens, 1.14x
// at 48, 0.90x at 64, 0.59x at 128; 6 heads of 64: 1.03x at 64, 0.55x at 128).
constexpr int64_t kAmxMinTokens = 64;
}  // namespace

template <typename T>
void attention_varlen(const T* q, const T* k, const T* v, T* out, const int32_t* cu_seqlens,
                      const AttentionShape& shape, float scale, bool causal, int num_threads,
                      const AttentionExtras& extras) {
  const AttentionArgs<T> args{q, k, v, out, cu_seqlens, shape, scale, causal, extras};
  double work = 0.0;
  for (int64_t s = 0; s < shape.num_seqs; ++s) {
    const double len = cu_seqlens[s + 1] - cu_seqlens[s];
    work += len * len;
  }
  work *= static_cast<double>(shape.num_heads * shape.head_dim) * 2.0;
  const int threads = threads_for(work, num_threads, 1 << 20);
  if constexpr (std::is_same_v<T, bf16>) {
    switch (bf16_kernel(shape, extras)) {
      case Bf16Products::kAmx: {
        std::vector<Scratch> widened(threads);
        const bool forced = extras.bf16_products == Bf16Products::kAmx;
        return run_items(shape, cu_seqlens, threads, kernels::amx_scratch_words, [&](int worker, int64_t s, int64_t h, uint32_t* w) {
          if (!forced && cu_seqlens[s + 1] - cu_seqlens[s] < kAmxMinTokens) return attend_one(args, s, h, widened[worker]);
          kernels::attend_item_amx(q, k, v, out, cu_seqlens, shape, scale, causal, s, h, w);
        });
      }
      case Bf16Products::kDot:
        return run_items(shape, cu_seqlens, threads, kernels::bf16_scratch_words, [&](int, int64_t s, int64_t h, uint32_t* w) {
          kernels::attend_item_bf16_dot(q, k, v, out, cu_seqlens, shape, scale, causal, s, h, w);
        });
      default:
        break;
    }
  }
  // Each worker reuses its scratch buffers across the (sequence, kv head) items it takes.
  std::vector<Scratch> scratch(threads);
  parallel_for_each(shape.num_seqs * shape.num_kv_heads, threads, [&](int worker, int64_t item) {
    attend_one(args, item / shape.num_kv_heads, item % shape.num_kv_heads, scratch[worker]);
  });
}

template void attention_varlen<float>(const float*, const float*, const float*, float*, const int32_t*,
                                      const AttentionShape&, float, bool, int, const AttentionExtras&);
template void attention_varlen<bf16>(const bf16*, const bf16*, const bf16*, bf16*, const int32_t*,
                                     const AttentionShape&, float, bool, int, const AttentionExtras&);

}  // namespace fastembed_rt::cpu
