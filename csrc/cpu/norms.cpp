#include "norms.h"

#include <cmath>
#include <vector>

#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

template <typename T>
struct NormArgs {
  const T *x, *residual, *weight, *bias;
  T *out, *sum_out;
  int64_t cols;
  float eps;
  NormKind kind;
};

// The sum of s[j] - offset (squared when `square`) over a row. Partial sums in kParts independent lanes, so that
// the vectorized loop keeps several accumulators: with omp simd's one, each vector waited for the previous add
// (4,096 x 384 LayerNorm + residual on one thread, AVX2 EPYC: bfloat16 1.29 -> 1.22 ms, float32 1.09 -> 1.03 ms).
FE_INLINE float sum_of(const float* s, int64_t n, float offset, bool square) {
  constexpr int64_t kParts = 32;  // four AVX2 vectors, two AVX-512 ones
  float part[kParts] = {};
  int64_t j = 0;
  for (; j + kParts <= n; j += kParts) {
    for (int64_t k = 0; k < kParts; ++k) {
      const float d = s[j + k] - offset;
      part[k] += square ? d * d : d;
    }
  }
  float total = 0.0f;
  for (; j < n; ++j) {
    const float d = s[j] - offset;
    total += square ? d * d : d;
  }
  for (float p : part) total += p;
  return total;
}

template <typename T>
FE_INLINE void norm_row(const NormArgs<T>& a, int64_t r, float* s) {
  const int64_t n = a.cols;
  const T* x = a.x + r * n;
  for (int64_t j = 0; j < n; ++j) s[j] = to_float(x[j]);
  if (a.residual) {
    const T* res = a.residual + r * n;
    for (int64_t j = 0; j < n; ++j) s[j] += to_float(res[j]);
  }
  if (a.sum_out) {
    T* so = a.sum_out + r * n;
    for (int64_t j = 0; j < n; ++j) so[j] = from_float<T>(s[j]);
  }
  const float mean = a.kind == NormKind::kLayerNorm ? sum_of(s, n, 0.0f, false) / static_cast<float>(n) : 0.0f;
  const float sq = sum_of(s, n, mean, true);
  const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + a.eps);
  T* out = a.out + r * n;
  if (a.bias) {
    for (int64_t j = 0; j < n; ++j) out[j] = from_float<T>((s[j] - mean) * rstd * to_float(a.weight[j]) + to_float(a.bias[j]));
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = from_float<T>((s[j] - mean) * rstd * to_float(a.weight[j]));
  }
}

template <typename T>
FE_INLINE void norm_chunk(const NormArgs<T>& a, int64_t begin, int64_t end) {
  std::vector<float> row(a.cols);
  for (int64_t r = begin; r < end; ++r) norm_row(a, r, row.data());
}

FE_ISA_DISPATCH(void, norm_rows_chunk, (const NormArgs<float>& a, int64_t b, int64_t e), (a, b, e), norm_chunk(a, b, e))
FE_ISA_DISPATCH(void, norm_rows_chunk, (const NormArgs<bf16>& a, int64_t b, int64_t e), (a, b, e), norm_chunk(a, b, e))

}  // namespace

template <typename T>
void norm_rows(const T* x, const T* residual, const T* weight, const T* bias, T* out, T* sum_out, int64_t rows,
               int64_t cols, float eps, NormKind kind, int num_threads) {
  const NormArgs<T> args{x, residual, weight, bias, out, sum_out, cols, eps, kind};
  const int threads = threads_for(static_cast<double>(rows) * cols * 4, num_threads);
  parallel_for(rows, threads, [&](int64_t begin, int64_t end) { norm_rows_chunk(args, begin, end); });
}

template void norm_rows<float>(const float*, const float*, const float*, const float*, float*, float*, int64_t,
                               int64_t, float, NormKind, int);
template void norm_rows<bf16>(const bf16*, const bf16*, const bf16*, const bf16*, bf16*, bf16*, int64_t, int64_t,
                              float, NormKind, int);

}  // namespace fastembed_rt::cpu
