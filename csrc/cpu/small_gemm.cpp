// Packing and dispatch; the arithmetic is in small_gemm_avx512.cpp.
#include "small_gemm.h"

#include <algorithm>

#include "cpu_features.h"
#include "parallel.h"
#include "small_gemm_kernels.h"

namespace fastembed_rt::cpu {

bool small_gemm_supported(WeightKind kind) {
  const CpuFeatures& f = cpu_features();
  const bool base = f.avx512f && f.avx512bw;
  switch (kind) {
    case WeightKind::kFloat32:
      return base;
    case WeightKind::kBFloat16:
      return base && f.avx512_bf16;
    case WeightKind::kInt8:
      return base && f.avx512_vnni;
  }
  return false;
}

PackedLinear pack_linear(WeightKind kind, const void* weight, int64_t n, int64_t k, const float* column_scales,
                         const float* bias) {
  PackedLinear p;
  p.kind = kind;
  p.n = n;
  p.k = k;
  p.panels = (n + kPanel - 1) / kPanel;
  const int64_t group = kind == WeightKind::kFloat32 ? 1 : (kind == WeightKind::kBFloat16 ? 2 : 4);
  p.k_padded = (k + group - 1) / group * group;
  const int64_t size = p.panels * p.k_padded * kPanel;
  // Element (row c of the weight = output column c, input index i) goes to panel c/16, then k-group
  // i/group, then column c%16, then i%group: a panel's k-group is one 64-byte vector.
  auto index = [&](int64_t c, int64_t i) {
    return ((c / kPanel) * (p.k_padded / group) + i / group) * kPanel * group + (c % kPanel) * group + i % group;
  };
  if (kind == WeightKind::kFloat32) {
    p.f32.assign(size, 0.0f);
    const auto* w = static_cast<const float*>(weight);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < k; ++i) p.f32[index(c, i)] = w[c * k + i];
  } else if (kind == WeightKind::kBFloat16) {
    p.bf16.assign(size, 0);
    const auto* w = static_cast<const uint16_t*>(weight);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < k; ++i) p.bf16[index(c, i)] = w[c * k + i];
  } else {
    p.i8.assign(size, 0);
    p.column_sums.assign(p.panels * kPanel, 0);
    p.column_scales.assign(p.panels * kPanel, 0.0f);
    const auto* w = static_cast<const int8_t*>(weight);
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t i = 0; i < k; ++i) {
        p.i8[index(c, i)] = w[c * k + i];
        p.column_sums[c] += w[c * k + i];
      }
      p.column_scales[c] = column_scales[c];
    }
  }
  if (bias) p.bias.assign(bias, bias + n);
  return p;
}

void small_linear(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads) {
  scratch.resize(static_cast<size_t>(m) * (w.k_padded + kPanel) * 4);
  kernels::prepare_rows(w, x, m, scratch.data());
  // A panel streams 16 columns of weights; below ~64 KiB of weights per worker, one thread is faster.
  const int64_t bytes = w.panels * kPanel * w.k_padded * (w.kind == WeightKind::kFloat32 ? 4 : w.kind == WeightKind::kBFloat16 ? 2 : 1);
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({num_threads, w.panels, bytes / 65536})));
  const int64_t per_thread = (w.panels + threads - 1) / threads;
  WorkerPool::instance().run(threads, [&](int worker) {
    const int64_t begin = worker * per_thread, end = std::min(w.panels, begin + per_thread);
    if (begin < end) kernels::linear_panels(w, x, scratch.data(), m, act, round_output, out, begin, end);
  });
}

}  // namespace fastembed_rt::cpu
