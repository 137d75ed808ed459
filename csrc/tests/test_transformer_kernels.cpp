// Checks the transformer kernels against straightforward double-precision loops: varlen attention
// (causal, grouped-query, odd head sizes), residual + LayerNorm / RMSNorm, and exact int8 row quantization.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/attention.h"
#include "cpu/isa.h"
#include "cpu/int8_linear.h"
#include "cpu/norms.h"
#include "cpu/vector_math.h"

namespace cpu = fastembed_rt::cpu;

namespace {

int failures = 0;

void expect_close(double got, double want, double tolerance, const char* what) {
  if (!(std::fabs(got - want) <= tolerance)) {
    if (failures++ < 10) std::printf("FAIL %s: got %.8f want %.8f\n", what, got, want);
  }
}

void check_attention(const std::vector<int32_t>& cu, int64_t heads, int64_t kv_heads, int64_t dim, bool causal,
                     std::mt19937& rng, int64_t left = -1, int64_t right = -1, bool with_bias = false) {
  std::normal_distribution<float> normal;
  const int64_t tokens = cu.back();
  std::vector<float> q(tokens * heads * dim), k(tokens * kv_heads * dim), v(tokens * kv_heads * dim);
  for (auto* x : {&q, &k, &v})
    for (auto& value : *x) value = normal(rng);
  std::vector<float> out(q.size());
  const cpu::AttentionShape shape{static_cast<int64_t>(cu.size()) - 1, heads, kv_heads, dim, heads * dim,
                                  kv_heads * dim, kv_heads * dim};
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  cpu::AttentionExtras extras{left, right};
  std::vector<float> bias;
  if (with_bias) {
    extras.bias_radius = cu.back();  // at least the longest sequence
    bias.resize(heads * (2 * extras.bias_radius + 1));
    for (auto& value : bias) value = normal(rng);
    extras.relative_bias = bias.data();
  }
  cpu::attention_varlen<float>(q.data(), k.data(), v.data(), out.data(), cu.data(), shape, scale, causal, 2, extras);
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    for (int64_t i = cu[s]; i < cu[s + 1]; ++i) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t g = h / (heads / kv_heads);
        const int64_t first = left < 0 ? cu[s] : std::max<int64_t>(cu[s], i - left);
        int64_t last = causal ? i + 1 : cu[s + 1];
        if (right >= 0) last = std::min(last, i + right + 1);
        std::vector<double> p;
        double top = -1e300, sum = 0.0;
        for (int64_t j = first; j < last; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < dim; ++d) dot += double(q[(i * heads + h) * dim + d]) * k[(j * kv_heads + g) * dim + d];
          const double b = with_bias ? bias[h * (2 * extras.bias_radius + 1) + extras.bias_radius + (j - i)] : 0.0;
          p.push_back(dot * scale + b);
          top = std::max(top, p.back());
        }
        for (auto& x : p) sum += (x = std::exp(x - top));
        for (int64_t d = 0; d < dim; ++d) {
          double want = 0.0;
          for (int64_t j = first; j < last; ++j) want += p[j - first] / sum * v[(j * kv_heads + g) * dim + d];
          expect_close(out[(i * heads + h) * dim + d], want, 1e-5, "attention");
        }
      }
    }
  }
}

void check_norms(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(1.0f, 3.0f);
  std::vector<float> x(rows * cols), residual(rows * cols), weight(cols), bias(cols), out(rows * cols), sum(rows * cols);
  for (auto* a : {&x, &residual, &weight, &bias})
    for (auto& value : *a) value = normal(rng);
  for (auto kind : {cpu::NormKind::kLayerNorm, cpu::NormKind::kRmsNorm}) {
    cpu::norm_rows<float>(x.data(), residual.data(), weight.data(), bias.data(), out.data(), sum.data(), rows, cols,
                          1e-5f, kind, 3);
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0.0, sq = 0.0;
      for (int64_t j = 0; j < cols; ++j) mean += double(x[r * cols + j]) + residual[r * cols + j];
      mean = kind == cpu::NormKind::kLayerNorm ? mean / cols : 0.0;
      for (int64_t j = 0; j < cols; ++j) sq += std::pow(double(x[r * cols + j]) + residual[r * cols + j] - mean, 2);
      const double rstd = 1.0 / std::sqrt(sq / cols + 1e-5);
      for (int64_t j = 0; j < cols; ++j) {
        const double s = double(x[r * cols + j]) + residual[r * cols + j];
        expect_close(sum[r * cols + j], s, 1e-5, "norm sum");
        expect_close(out[r * cols + j], (s - mean) * rstd * weight[j] + bias[j], 1e-4, "norm");
      }
    }
  }
}

void check_quantize(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * cols), scales(rows);
  for (auto& value : x) value = normal(rng);
  std::vector<int8_t> q(rows * cols);
  cpu::quantize_rows(x.data(), rows, cols, q.data(), scales.data(), nullptr, 2);
  for (int64_t r = 0; r < rows; ++r) {
    float absmax = 0.0f;
    for (int64_t j = 0; j < cols; ++j) absmax = std::max(absmax, std::fabs(x[r * cols + j]));
    expect_close(scales[r], absmax / 127.0f, 0.0, "quantize scale");
    const float inv = 127.0f / absmax;
    for (int64_t j = 0; j < cols; ++j) expect_close(q[r * cols + j], std::nearbyint(x[r * cols + j] * inv), 0.0, "code");
  }
}

// Attention's softmax weights: relative error against exp2 over its whole range, exact powers of two at integers,
// and the floor of 2^-115 below it (-inf included).
void check_exp2_nonpositive() {
  double worst = 0.0;
  for (int i = 0; i <= 1150000; ++i) {
    const float y = -static_cast<float>(i) * 1e-4f;
    worst = std::max(worst, std::fabs(cpu::exp2_nonpositive(y) / std::exp2(static_cast<double>(y)) - 1.0));
  }
  expect_close(worst, 0.0, 2.5e-7, "exp2_nonpositive relative error");
  for (int n = 0; n >= -115; --n) {
    expect_close(cpu::exp2_nonpositive(static_cast<float>(n)) / std::exp2(n), 1.0, 2.5e-7, "exp2_nonpositive(integer)");
  }
  for (float below : {-116.0f, -1e9f, -INFINITY}) {
    expect_close(cpu::exp2_nonpositive(below) / std::exp2(-115.0), 1.0, 2.5e-7, "exp2_nonpositive floor");
  }
}

void check_all(std::mt19937& rng) {
  for (bool causal : {false, true}) {
    check_attention({0, 1, 8, 45, 45, 70}, 4, 4, 32, causal, rng);
    check_attention({0, 17, 50}, 6, 2, 13, causal, rng);
    check_attention({0, 3}, 2, 1, 1, causal, rng);
    check_attention({0, 130}, 2, 2, 64, causal, rng);
    // Sliding windows (both sides, one side, zero width) and a relative position bias.
    check_attention({0, 1, 8, 45, 45, 70}, 4, 2, 32, causal, rng, 5, 9);
    check_attention({0, 130, 133}, 2, 2, 64, causal, rng, 16, 0);
    check_attention({0, 40}, 2, 1, 13, causal, rng, 0, 0);
    check_attention({0, 1, 8, 45, 45, 70}, 4, 4, 32, causal, rng, -1, -1, true);
    check_attention({0, 17, 50}, 6, 3, 16, causal, rng, 7, 7, true);
  }
  check_norms(1, 1, rng);
  check_norms(37, 383, rng);
  check_quantize(5, 1, rng);
  check_quantize(19, 1536, rng);
}

}  // namespace

int main() {
  std::mt19937 rng(11);
  check_exp2_nonpositive();
  // Every build of the kernels this CPU runs (in the single-target libraries the builds are the same code).
  for (cpu::Isa isa : cpu::supported_isas()) {
    cpu::set_active_isa(isa);
    check_all(rng);
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("transformer kernels: all checks passed\n");
  return 0;
}
