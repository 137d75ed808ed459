#include "activations.h"

#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

template <typename T>
struct BiasActArgs {
  const T *x, *bias;
  T* out;
  int64_t cols;
  Activation act;
};

// One loop per activation and bias presence, so that each vectorizes without a branch inside.
template <typename T, Activation kAct, bool kBias>
FE_INLINE void rows_with(const BiasActArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* x = a.x + r * a.cols;
    T* out = a.out + r * a.cols;
    for (int64_t j = 0; j < a.cols; ++j) {
      const float v = kBias ? to_float(x[j]) + to_float(a.bias[j]) : to_float(x[j]);
      out[j] = from_float<T>(activate(v, kAct));
    }
  }
}

template <typename T, Activation kAct>
FE_INLINE void rows_with(const BiasActArgs<T>& a, int64_t begin, int64_t end) {
  if (a.bias) {
    rows_with<T, kAct, true>(a, begin, end);
  } else {
    rows_with<T, kAct, false>(a, begin, end);
  }
}

template <typename T>
FE_INLINE void bias_act_chunk(const BiasActArgs<T>& a, int64_t begin, int64_t end) {
  switch (a.act) {
    case Activation::kGeluErf:
      return rows_with<T, Activation::kGeluErf>(a, begin, end);
    case Activation::kGeluTanh:
      return rows_with<T, Activation::kGeluTanh>(a, begin, end);
    default:
      return rows_with<T, Activation::kNone>(a, begin, end);
  }
}

FE_ISA_DISPATCH(void, bias_act_rows, (const BiasActArgs<float>& a, int64_t b, int64_t e), (a, b, e), bias_act_chunk(a, b, e))
FE_ISA_DISPATCH(void, bias_act_rows, (const BiasActArgs<bf16>& a, int64_t b, int64_t e), (a, b, e), bias_act_chunk(a, b, e))

}  // namespace

template <typename T>
void bias_activation(const T* x, const T* bias, T* out, int64_t rows, int64_t cols, Activation act, int num_threads) {
  const BiasActArgs<T> args{x, bias, out, cols, act};
  const int threads = threads_for(static_cast<double>(rows) * cols * 16, num_threads);
  parallel_for(rows, threads, [&](int64_t begin, int64_t end) { bias_act_rows(args, begin, end); });
}

template void bias_activation<float>(const float*, const float*, float*, int64_t, int64_t, Activation, int);
template void bias_activation<bf16>(const bf16*, const bf16*, bf16*, int64_t, int64_t, Activation, int);

}  // namespace fastembed_rt::cpu
