#include "pooling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel.h"
#include "vector_math.h"

namespace fastembed_rt::cpu {
namespace {

template <typename T>
FE_INLINE void add_scaled(float* acc, const T* row, float weight, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += weight * to_float(row[j]);
}

template <typename T>
FE_INLINE void pool_one(const T* hidden, int64_t row_stride, int64_t hidden_size, int64_t start, int64_t end,
              int64_t first_valid, PoolMode mode, float* out) {
  const int64_t count = end - first_valid;
  const T* row = nullptr;
  switch (mode) {
    case PoolMode::kCls:
      if (end > start) row = hidden + (count > 0 ? first_valid : start) * row_stride;
      break;
    case PoolMode::kLastToken:
      if (count > 0) row = hidden + (end - 1) * row_stride;
      break;
    case PoolMode::kMax:
      std::fill(out, out + hidden_size, -std::numeric_limits<float>::infinity());
      for (int64_t t = first_valid; t < end; ++t) {
        const T* r = hidden + t * row_stride;
        for (int64_t j = 0; j < hidden_size; ++j) out[j] = std::max(out[j], to_float(r[j]));
      }
      return;
    case PoolMode::kMean:
    case PoolMode::kMeanSqrtLen:
    case PoolMode::kWeightedMean: {
      std::fill(out, out + hidden_size, 0.0f);
      float weight_sum = 0.0f;
      for (int64_t t = first_valid; t < end; ++t) {
        const float weight = mode == PoolMode::kWeightedMean ? static_cast<float>(t - start + 1) : 1.0f;
        add_scaled(out, hidden + t * row_stride, weight, hidden_size);
        weight_sum += weight;
      }
      float denominator = std::max(weight_sum, 1e-9f);
      if (mode == PoolMode::kMeanSqrtLen) denominator = std::sqrt(denominator);
      const float inv = 1.0f / denominator;
      for (int64_t j = 0; j < hidden_size; ++j) out[j] *= inv;
      return;
    }
  }
  if (row == nullptr) {
    std::fill(out, out + hidden_size, 0.0f);
  } else {
    for (int64_t j = 0; j < hidden_size; ++j) out[j] = to_float(row[j]);
  }
}

FE_INLINE void l2_normalize(float* v, int64_t n) {
  double sq = 0.0;
  for (int64_t j = 0; j < n; ++j) sq += static_cast<double>(v[j]) * v[j];
  const float inv = 1.0f / std::max(static_cast<float>(std::sqrt(sq)), 1e-12f);
  for (int64_t j = 0; j < n; ++j) v[j] *= inv;
}

template <typename T>
struct PoolArgs {
  const T* hidden;
  int64_t row_stride, hidden_size;
  const int32_t *cu_seqlens, *skip;
  PoolMode mode;
  bool normalize;
  float* out;
  int64_t out_stride;
};

template <typename T>
FE_INLINE void pool_sequences(const PoolArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const int64_t start = a.cu_seqlens[i], stop = a.cu_seqlens[i + 1];
    const int64_t first_valid = std::min<int64_t>(stop, start + (a.skip ? a.skip[i] : 0));
    float* dst = a.out + i * a.out_stride;
    pool_one(a.hidden, a.row_stride, a.hidden_size, start, stop, first_valid, a.mode, dst);
    if (a.normalize) l2_normalize(dst, a.hidden_size);
  }
}

// Built per ISA: the bfloat16 rows widen to float32 a vector at a time.
FE_ISA_DISPATCH(void, pool_chunk, (const PoolArgs<float>& a, int64_t b, int64_t e), (a, b, e), pool_sequences(a, b, e))
FE_ISA_DISPATCH(void, pool_chunk, (const PoolArgs<bf16>& a, int64_t b, int64_t e), (a, b, e), pool_sequences(a, b, e))

}  // namespace

template <typename T>
void pool_packed(const T* hidden, int64_t row_stride, int64_t hidden_size, const int32_t* cu_seqlens,
                 int64_t num_seqs, const int32_t* skip, PoolMode mode, bool normalize, float* out,
                 int64_t out_stride, int num_threads) {
  // Threads pay off only when there is enough work to amortize starting them.
  const int64_t total_tokens = num_seqs > 0 ? cu_seqlens[num_seqs] : 0;
  const int threads = total_tokens * hidden_size >= (1 << 18) ? num_threads : 1;
  const PoolArgs<T> args{hidden, row_stride, hidden_size, cu_seqlens, skip, mode, normalize, out, out_stride};
  parallel_for(num_seqs, threads, [&](int64_t begin, int64_t end) { pool_chunk(args, begin, end); });
}

template void pool_packed<float>(const float*, int64_t, int64_t, const int32_t*, int64_t, const int32_t*, PoolMode, bool,
                                float*, int64_t, int);
template void pool_packed<bf16>(const bf16*, int64_t, int64_t, const int32_t*, int64_t, const int32_t*, PoolMode, bool,
                               float*, int64_t, int);

}  // namespace fastembed_rt::cpu
