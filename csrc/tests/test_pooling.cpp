// Checks pool_packed against a straightforward double-precision loop on awkward shapes.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "cpu/pooling.h"

using fastembed_rt::cpu::PoolMode;
using fastembed_rt::cpu::pool_packed;

namespace {

std::vector<double> expected_row(const std::vector<float>& h, int64_t d, int64_t start, int64_t end, int64_t skip,
                                 PoolMode mode) {
  const int64_t first = std::min(end, start + skip);
  std::vector<double> out(d, 0.0);
  if (mode == PoolMode::kCls) {
    if (end > start) {
      const int64_t t = first < end ? first : start;
      for (int64_t j = 0; j < d; ++j) out[j] = h[t * d + j];
    }
  } else if (mode == PoolMode::kLastToken) {
    if (first < end)
      for (int64_t j = 0; j < d; ++j) out[j] = h[(end - 1) * d + j];
  } else if (mode == PoolMode::kMax) {
    for (int64_t j = 0; j < d; ++j) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t t = first; t < end; ++t) m = std::max(m, static_cast<double>(h[t * d + j]));
      out[j] = m;
    }
  } else {
    double wsum = 0.0;
    for (int64_t t = first; t < end; ++t) {
      const double w = mode == PoolMode::kWeightedMean ? static_cast<double>(t - start + 1) : 1.0;
      wsum += w;
      for (int64_t j = 0; j < d; ++j) out[j] += w * h[t * d + j];
    }
    double den = std::max(wsum, 1e-9);
    if (mode == PoolMode::kMeanSqrtLen) den = std::sqrt(den);
    for (auto& v : out) v /= den;
  }
  return out;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::vector<std::vector<int>> length_sets = {{}, {1}, {0, 3}, {1, 7, 129, 2}, {31, 0, 5, 64, 1}};
  const std::vector<int64_t> dims = {1, 3, 17, 384};
  int failures = 0;
  for (const auto& lengths : length_sets) {
    for (const int64_t d : dims) {
      std::vector<int32_t> cu = {0}, skip;
      for (int len : lengths) {
        cu.push_back(cu.back() + len);
        skip.push_back(static_cast<int32_t>(rng() % 4));
      }
      const int64_t n = static_cast<int64_t>(lengths.size()), total = cu.back();
      std::vector<float> h(total * d);
      for (auto& v : h) v = normal(rng);
      for (int mode = 0; mode <= 5; ++mode) {
        for (int use_skip = 0; use_skip < 2; ++use_skip) {
          for (int threads : {1, 3}) {
            std::vector<float> out(n * d);
            pool_packed(h.data(), d, d, cu.data(), n, use_skip ? skip.data() : nullptr, static_cast<PoolMode>(mode),
                        false, out.data(), d, threads);
            for (int64_t i = 0; i < n; ++i) {
              const auto want = expected_row(h, d, cu[i], cu[i + 1], use_skip ? skip[i] : 0, static_cast<PoolMode>(mode));
              for (int64_t j = 0; j < d; ++j) {
                const double got = out[i * d + j];
                const bool same = (std::isinf(want[j]) && got == want[j]) ||
                                  std::abs(got - want[j]) <= 1e-5 + 1e-5 * std::abs(want[j]);
                if (!same) {
                  if (++failures < 10)
                    std::printf("mismatch mode=%d seq=%lld dim=%lld: got %g want %g\n", mode,
                                static_cast<long long>(i), static_cast<long long>(j), got, want[j]);
                }
              }
            }
          }
        }
      }
    }
  }
  // Normalization: every non-empty mean-pooled row has unit norm.
  std::vector<float> h = {3.0f, 4.0f, 3.0f, 4.0f};
  std::vector<int32_t> cu = {0, 2};
  std::vector<float> out(2);
  pool_packed(h.data(), 2, 2, cu.data(), 1, nullptr, PoolMode::kMean, true, out.data(), 2, 1);
  if (std::abs(out[0] - 0.6f) > 1e-6f || std::abs(out[1] - 0.8f) > 1e-6f) {
    std::printf("normalize: got (%g, %g), want (0.6, 0.8)\n", out[0], out[1]);
    ++failures;
  }
  std::printf("%s: %d failures\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
