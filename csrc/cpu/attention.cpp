#include "attention.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

// A tile of kQueryRows queries meets kKeyBlock keys at a time: the tile's scores (4 x 32) stay in
// registers, and each key/value row loaded serves all four queries.
constexpr int64_t kQueryRows = 4;
constexpr int64_t kKeyBlock = 32;

template <typename T>
struct AttentionArgs {
  const T *q, *k, *v;
  T* out;
  const int32_t* cu_seqlens;
  AttentionShape shape;
  float scale;
  bool causal;
};

// Per-thread float32 copies of one (sequence, kv head), zero-padded to whole key blocks: keys transposed
// [head_dim, padded_len] so that a query tile's scores against a block are vectorized along the keys.
struct Scratch {
  std::vector<float> keys_t, values, queries, acc;
};

FE_INLINE float max2(float a, float b) { return a > b ? a : b; }
FE_INLINE float add2(float a, float b) { return a + b; }

// Reduces a block by halving it element-wise: unlike a serial float reduction, this vectorizes.
template <int64_t kSize, typename Op>
FE_INLINE float block_reduce(const float* v, Op op) {
  float half[kSize / 2];
  for (int64_t j = 0; j < kSize / 2; ++j) half[j] = op(v[j], v[j + kSize / 2]);
  for (int64_t width = kSize / 4; width >= 1; width /= 2) {
    for (int64_t j = 0; j < width; ++j) half[j] = op(half[j], half[j + width]);
  }
  return half[0];
}

// Online softmax for query rows i0..i0+3 of a sequence of `len` tokens; row r may see keys < limit[r].
template <int64_t kDim>
FE_INLINE void attend_tile(const float* keys_t, const float* values, int64_t padded_len, int64_t dim_runtime,
                           const float* q, const int64_t* limit, int64_t n_keys, float* acc) {
  const int64_t dim = kDim ? kDim : dim_runtime;
  // With the head size known at compile time the accumulators live in a local array the compiler can
  // keep in registers; otherwise in the scratch buffer `acc`.
  alignas(64) float local[kQueryRows * (kDim ? kDim : 1)];
  float* __restrict o_all = kDim ? local : acc;
  float running_max[kQueryRows], denominator[kQueryRows];
  for (int64_t r = 0; r < kQueryRows; ++r) {
    running_max[r] = -std::numeric_limits<float>::infinity();
    denominator[r] = 0.0f;
  }
  for (int64_t j = 0; j < kQueryRows * dim; ++j) o_all[j] = 0.0f;
  for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyBlock) {
    alignas(64) float s[kQueryRows][kKeyBlock] = {};
    for (int64_t d = 0; d < dim; ++d) {
      const float* kt = keys_t + d * padded_len + j0;
      for (int64_t r = 0; r < kQueryRows; ++r) {
        const float qd = q[r * dim + d];
        for (int64_t j = 0; j < kKeyBlock; ++j) s[r][j] += qd * kt[j];
      }
    }
    for (int64_t r = 0; r < kQueryRows; ++r) {
      const int64_t visible = limit[r] - j0;  // keys j < visible of this block are seen by row r
      for (int64_t j = 0; j < kKeyBlock; ++j) s[r][j] = j < visible ? s[r][j] : -std::numeric_limits<float>::infinity();
      const float new_max = std::max(running_max[r], block_reduce<kKeyBlock>(s[r], max2));
      if (new_max == -std::numeric_limits<float>::infinity()) continue;  // nothing visible yet
      const float correction = fast_exp(running_max[r] - new_max);
      for (int64_t j = 0; j < kKeyBlock; ++j) s[r][j] = j < visible ? fast_exp(s[r][j] - new_max) : 0.0f;
      denominator[r] = denominator[r] * correction + block_reduce<kKeyBlock>(s[r], add2);
      running_max[r] = new_max;
      float* o = o_all + r * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] *= correction;
    }
    for (int64_t j = 0; j < kKeyBlock; ++j) {
      const float* vr = values + (j0 + j) * dim;
      for (int64_t r = 0; r < kQueryRows; ++r) {
        const float p = s[r][j];
        float* o = o_all + r * dim;
        for (int64_t d = 0; d < dim; ++d) o[d] += p * vr[d];
      }
    }
  }
  for (int64_t r = 0; r < kQueryRows; ++r) {
    const float inv = denominator[r] > 0.0f ? 1.0f / denominator[r] : 0.0f;
    for (int64_t d = 0; d < dim; ++d) acc[r * dim + d] = o_all[r * dim + d] * inv;
  }
}

// All query heads sharing kv head `kv_head` of sequence `seq`.
template <typename T, int64_t kDim>
FE_INLINE void attend_item(const AttentionArgs<T>& a, int64_t seq, int64_t kv_head, Scratch& w) {
  const AttentionShape& sh = a.shape;
  const int64_t start = a.cu_seqlens[seq], len = a.cu_seqlens[seq + 1] - start, dim = sh.head_dim;
  if (len == 0) return;
  const int64_t padded = (len + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
  w.keys_t.assign(dim * padded, 0.0f);
  w.values.assign(padded * dim, 0.0f);
  w.queries.resize(kQueryRows * dim);
  w.acc.resize(kQueryRows * dim);
  for (int64_t t = 0; t < len; ++t) {
    const T* kr = a.k + (start + t) * sh.k_token_stride + kv_head * dim;
    const T* vr = a.v + (start + t) * sh.v_token_stride + kv_head * dim;
    float* vd = w.values.data() + t * dim;
    for (int64_t d = 0; d < dim; ++d) {
      w.keys_t[d * padded + t] = to_float(kr[d]);
      vd[d] = to_float(vr[d]);
    }
  }
  const int64_t group = sh.num_heads / sh.num_kv_heads;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = 0; i0 < len; i0 += kQueryRows) {
      const int64_t rows = std::min(kQueryRows, len - i0);
      int64_t limit[kQueryRows];
      for (int64_t r = 0; r < kQueryRows; ++r) {
        const T* qr = a.q + (start + std::min(i0 + r, len - 1)) * sh.q_token_stride + h * dim;
        for (int64_t d = 0; d < dim; ++d) w.queries[r * dim + d] = to_float(qr[d]) * a.scale;
        limit[r] = a.causal ? std::min(i0 + r + 1, len) : len;
      }
      const int64_t n_keys = a.causal ? std::min(len, i0 + kQueryRows) : len;
      attend_tile<kDim>(w.keys_t.data(), w.values.data(), padded, dim, w.queries.data(), limit, n_keys, w.acc.data());
      for (int64_t r = 0; r < rows; ++r) {
        T* out = a.out + ((start + i0 + r) * sh.num_heads + h) * dim;
        for (int64_t d = 0; d < dim; ++d) out[d] = from_float<T>(w.acc[r * dim + d]);
      }
    }
  }
}

// Common head sizes get a loop nest with the head dimension known at compile time.
template <typename T>
FE_INLINE void attend_item(const AttentionArgs<T>& a, int64_t seq, int64_t kv_head, Scratch& w) {
  switch (a.shape.head_dim) {
    case 32:
      return attend_item<T, 32>(a, seq, kv_head, w);
    case 64:
      return attend_item<T, 64>(a, seq, kv_head, w);
    case 128:
      return attend_item<T, 128>(a, seq, kv_head, w);
    default:
      return attend_item<T, 0>(a, seq, kv_head, w);
  }
}

FE_MULTIVERSION void attend_item_f32(const AttentionArgs<float>& a, int64_t s, int64_t h, Scratch& w) {
  attend_item(a, s, h, w);
}
FE_MULTIVERSION void attend_item_bf16(const AttentionArgs<bf16>& a, int64_t s, int64_t h, Scratch& w) {
  attend_item(a, s, h, w);
}
void attend_item_any(const AttentionArgs<float>& a, int64_t s, int64_t h, Scratch& w) { attend_item_f32(a, s, h, w); }
void attend_item_any(const AttentionArgs<bf16>& a, int64_t s, int64_t h, Scratch& w) { attend_item_bf16(a, s, h, w); }

}  // namespace

template <typename T>
void attention_varlen(const T* q, const T* k, const T* v, T* out, const int32_t* cu_seqlens,
                      const AttentionShape& shape, float scale, bool causal, int num_threads) {
  const AttentionArgs<T> args{q, k, v, out, cu_seqlens, shape, scale, causal};
  double work = 0.0;
  for (int64_t s = 0; s < shape.num_seqs; ++s) {
    const double len = cu_seqlens[s + 1] - cu_seqlens[s];
    work += len * len;
  }
  work *= static_cast<double>(shape.num_heads * shape.head_dim) * 2.0;
  const int threads = threads_for(work, num_threads, 1 << 20);
  // Each worker reuses its scratch buffers across the (sequence, kv head) items it takes.
  std::vector<Scratch> scratch(threads);
  parallel_for_each(shape.num_seqs * shape.num_kv_heads, threads, [&](int worker, int64_t item) {
    attend_item_any(args, item / shape.num_kv_heads, item % shape.num_kv_heads, scratch[worker]);
  });
}

template void attention_varlen<float>(const float*, const float*, const float*, float*, const int32_t*,
                                      const AttentionShape&, float, bool, int);
template void attention_varlen<bf16>(const bf16*, const bf16*, const bf16*, bf16*, const int32_t*,
                                     const AttentionShape&, float, bool, int);

}  // namespace fastembed_rt::cpu
