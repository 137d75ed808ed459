// Packing and dispatch; the arithmetic is in small_gemm_avx512.cpp.
#include "small_gemm.h"

#include <algorithm>

#include "cpu_features.h"
#include "int8_linear.h"
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

namespace {

// x as the kind's dot products read it, rows zero-padded to k_padded: bfloat16 (nearest even), or int8 codes
// and scales exactly as quantize_rows makes them, stored unsigned (+128) for vpdpbusd.
void prepare_rows(const PackedLinear& w, const float* x, int64_t m, uint8_t* scratch) {
  if (w.kind == WeightKind::kBFloat16) {
    auto* rows = reinterpret_cast<bf16*>(scratch);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < w.k_padded; ++i) rows[r * w.k_padded + i] = i < w.k ? from_float<bf16>(x[r * w.k + i]) : bf16{0};
    }
  } else if (w.kind == WeightKind::kInt8) {
    auto* scales = reinterpret_cast<float*>(scratch + m * w.k_padded);
    auto* codes = reinterpret_cast<int8_t*>(scales + m);  // [m, k], then shifted into place
    quantize_rows<float>(x, m, w.k, codes, scales, 1);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < w.k_padded; ++i) {
        scratch[r * w.k_padded + i] = static_cast<uint8_t>((i < w.k ? codes[r * w.k + i] : 0) + 128);
      }
    }
  }
}

}  // namespace

void small_linear(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads) {
  // bf16 rows or u8 codes [m, k_padded], then m scales and the signed codes [m, k]: under m * (k_padded + 16) * 4.
  scratch.resize(static_cast<size_t>(m) * (w.k_padded + kPanel) * 4);
  prepare_rows(w, x, m, scratch.data());
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
