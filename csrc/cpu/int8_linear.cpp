#include "int8_linear.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

// Returns the row's scale; with `zero` (asymmetric 7-bit), also its zero point (int8_linear.h).
template <typename T>
FE_INLINE float quantize_row(const T* x, int64_t cols, int8_t* q, int32_t* zero) {
  // Round the float products half to even, as torch.round does. (Adding 1.5 * 2^23 to round would let the
  // compiler fuse it with the multiply into one FMA, which rounds an exact product: a different code in
  // near-ties.)
  if (zero) {
    float lo = 0.0f, hi = 0.0f;
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int64_t j = 0; j < cols; ++j) {
      lo = std::min(lo, to_float(x[j]));
      hi = std::max(hi, to_float(x[j]));
    }
    const float range = hi - lo;
    const float inv = range > 0.0f ? 127.0f / range : 0.0f;
    const float z = std::nearbyint(-lo * inv);
    for (int64_t j = 0; j < cols; ++j) {
      const float u = std::min(127.0f, std::max(0.0f, std::nearbyint(to_float(x[j]) * inv) + z));
      q[j] = static_cast<int8_t>(static_cast<int32_t>(u - z));
    }
    *zero = static_cast<int32_t>(z);
    return range / 127.0f;
  }
  float absmax = 0.0f;
#pragma omp simd reduction(max : absmax)
  for (int64_t j = 0; j < cols; ++j) absmax = std::max(absmax, std::fabs(to_float(x[j])));
  const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    float v = std::nearbyint(to_float(x[j]) * inv);
    v = std::min(127.0f, std::max(-127.0f, v));
    q[j] = static_cast<int8_t>(static_cast<int32_t>(v));
  }
  return absmax / 127.0f;
}

template <typename T>
FE_INLINE void quantize_rows_range(const T* x, int64_t cols, int8_t* q, float* scales, int32_t* zeros, int64_t begin,
                                   int64_t end) {
  for (int64_t r = begin; r < end; ++r) scales[r] = quantize_row(x + r * cols, cols, q + r * cols, zeros ? zeros + r : nullptr);
}

FE_ISA_DISPATCH(void, quantize_chunk,
                (const float* x, int64_t cols, int8_t* q, float* scales, int32_t* zeros, int64_t begin, int64_t end),
                (x, cols, q, scales, zeros, begin, end), quantize_rows_range(x, cols, q, scales, zeros, begin, end))
FE_ISA_DISPATCH(void, quantize_chunk,
                (const bf16* x, int64_t cols, int8_t* q, float* scales, int32_t* zeros, int64_t begin, int64_t end),
                (x, cols, q, scales, zeros, begin, end), quantize_rows_range(x, cols, q, scales, zeros, begin, end))

template <Activation kAct, bool kBias>
FE_INLINE void dequantize_with(const int32_t* acc, int64_t cols, const float* row_scales, const float* col_scales,
                               const float* bias, float* out, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int32_t* ar = acc + r * cols;
    float* o = out + r * cols;
    const float rs = row_scales[r];
    for (int64_t j = 0; j < cols; ++j) {
      const float v = static_cast<float>(ar[j]) * (rs * col_scales[j]) + (kBias ? bias[j] : 0.0f);
      o[j] = activate(v, kAct);
    }
  }
}

template <Activation kAct>
FE_INLINE void dequantize_with(const int32_t* acc, int64_t cols, const float* row_scales, const float* col_scales,
                               const float* bias, float* out, int64_t begin, int64_t end) {
  if (bias) {
    dequantize_with<kAct, true>(acc, cols, row_scales, col_scales, bias, out, begin, end);
  } else {
    dequantize_with<kAct, false>(acc, cols, row_scales, col_scales, bias, out, begin, end);
  }
}

FE_INLINE void dequantize_chunk(const int32_t* acc, int64_t cols, const float* row_scales,
                                      const float* col_scales, const float* bias, Activation act, float* out,
                                      int64_t begin, int64_t end) {
  switch (act) {
    case Activation::kGeluErf:
      return dequantize_with<Activation::kGeluErf>(acc, cols, row_scales, col_scales, bias, out, begin, end);
    case Activation::kGeluTanh:
      return dequantize_with<Activation::kGeluTanh>(acc, cols, row_scales, col_scales, bias, out, begin, end);
    default:
      return dequantize_with<Activation::kNone>(acc, cols, row_scales, col_scales, bias, out, begin, end);
  }
}

FE_ISA_DISPATCH(void, dequantize_rows_chunk,
                (const int32_t* acc, int64_t cols, const float* row_scales, const float* col_scales, const float* bias,
                 Activation act, float* out, int64_t begin, int64_t end),
                (acc, cols, row_scales, col_scales, bias, act, out, begin, end),
                dequantize_chunk(acc, cols, row_scales, col_scales, bias, act, out, begin, end))

FE_INLINE void requantize_range(const int32_t* acc, int64_t cols, const float* row_scales, const float* col_scales,
                                const float* bias, Activation act, int8_t* codes, float* out_scales, int32_t* zeros,
                                int64_t begin, int64_t end) {
  std::vector<float> row(cols);
  for (int64_t r = begin; r < end; ++r) {
    dequantize_chunk(acc + r * cols, cols, row_scales + r, col_scales, bias, act, row.data(), 0, 1);
    out_scales[r] = quantize_row(row.data(), cols, codes + r * cols, zeros ? zeros + r : nullptr);
  }
}

FE_ISA_DISPATCH(void, requantize_chunk,
                (const int32_t* acc, int64_t cols, const float* row_scales, const float* col_scales, const float* bias,
                 Activation act, int8_t* codes, float* out_scales, int32_t* zeros, int64_t begin, int64_t end),
                (acc, cols, row_scales, col_scales, bias, act, codes, out_scales, zeros, begin, end),
                requantize_range(acc, cols, row_scales, col_scales, bias, act, codes, out_scales, zeros, begin, end))

}  // namespace

template <typename T>
void quantize_rows(const T* x, int64_t rows, int64_t cols, int8_t* q, float* scales, int32_t* zeros, int num_threads) {
  const int threads = threads_for(static_cast<double>(rows) * cols * 2, num_threads);
  parallel_for(rows, threads, [&](int64_t b, int64_t e) { quantize_chunk(x, cols, q, scales, zeros, b, e); });
}

template void quantize_rows<float>(const float*, int64_t, int64_t, int8_t*, float*, int32_t*, int);
template void quantize_rows<bf16>(const bf16*, int64_t, int64_t, int8_t*, float*, int32_t*, int);

void dequantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, float* out, int num_threads) {
  const double per_element = act == Activation::kNone ? 2 : 16;
  const int threads = threads_for(static_cast<double>(rows) * cols * per_element, num_threads);
  parallel_for(rows, threads, [&](int64_t b, int64_t e) {
    dequantize_rows_chunk(acc, cols, row_scales, col_scales, bias, act, out, b, e);
  });
}

void requantize_rows(const int32_t* acc, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                     const float* bias, Activation act, int8_t* codes, float* out_scales, int32_t* zeros,
                     int num_threads) {
  const double per_element = act == Activation::kNone ? 4 : 18;
  const int threads = threads_for(static_cast<double>(rows) * cols * per_element, num_threads);
  parallel_for(rows, threads, [&](int64_t b, int64_t e) {
    requantize_chunk(acc, cols, row_scales, col_scales, bias, act, codes, out_scales, zeros, b, e);
  });
}

}  // namespace fastembed_rt::cpu
