#include "ceilings.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "cpu_features.h"
#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

// Instructions per second of `loop` on all threads together, with iterations calibrated on one thread so
// that a run lasts about `seconds`.
template <typename Loop>
double instructions_per_second(Loop loop, int num_threads, double seconds, int64_t chains = kernels::kCeilingChains) {
  using Clock = std::chrono::steady_clock;
  std::atomic<int64_t> sink{0};
  int64_t iterations = 1 << 14;
  for (;;) {  // calibrate: double until one run takes a tenth of the budget
    const auto t0 = Clock::now();
    sink += static_cast<int64_t>(loop(iterations));
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds / 10) break;
    iterations *= 2;
  }
  iterations *= 10;
  const auto t0 = Clock::now();
  parallel_for(num_threads, num_threads, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) sink += static_cast<int64_t>(loop(iterations));
  });
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  return sink.load() == 42 ? 0.0 : static_cast<double>(num_threads) * iterations * chains / elapsed;
}

}  // namespace

bool ceilings_supported() { return isa_at_least(Isa::kAvx2); }

Ceilings measure_ceilings(int num_threads, double seconds) {
  const CpuFeatures& f = cpu_features();
  const bool avx512 = active_isa() == Isa::kAvx512;
  Ceilings c{active_isa(), 0.0, 0.0, 0.0, 0.0};
  if (avx512 && f.avx512_vnni) {
    c.int8_macs_per_s = 64.0 * instructions_per_second(kernels::vnni_loop_avx512, num_threads, seconds);
  } else {
    c.int8_macs_per_s = 32.0 * instructions_per_second(kernels::maddubs_loop_avx2, num_threads, seconds, kernels::kVectorChainsAvx2);
  }
  c.int16_macs_per_s = avx512 ? 32.0 * instructions_per_second(kernels::madd_loop_avx512, num_threads, seconds)
                              : 16.0 * instructions_per_second(kernels::madd_loop_avx2, num_threads, seconds, kernels::kVectorChainsAvx2);
  c.fp32_fmas_per_s = avx512 ? 16.0 * instructions_per_second(kernels::fma_loop_avx512, num_threads, seconds)
                             : 8.0 * instructions_per_second(kernels::fma_loop_avx2, num_threads, seconds, kernels::kVectorChainsAvx2);
  if (avx512 && f.avx512_vpopcntdq) {
    c.hamming_bits_per_s = 512.0 * instructions_per_second(kernels::hamming_loop_avx512, num_threads, seconds);
  } else {
    c.hamming_bits_per_s = std::max(64.0 * instructions_per_second(kernels::popcnt_loop_avx2, num_threads, seconds),
                                    256.0 * instructions_per_second(kernels::popcount_lut_loop_avx2, num_threads, seconds, kernels::kVectorChainsAvx2));
  }
  return c;
}

}  // namespace fastembed_rt::cpu
