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
  using namespace kernels;
  const CpuFeatures& f = cpu_features();
  const bool avx512 = active_isa() == Isa::kAvx512;
  // Operations per second of a loop doing `per_instruction` of them per instruction.
  const auto rate = [&](auto loop, double per_instruction, int64_t chains = kCeilingChains) {
    return per_instruction * instructions_per_second(loop, num_threads, seconds, chains);
  };
  const int64_t ymm = kVectorChainsAvx2;
  Ceilings c{active_isa(), 0.0, 0.0, 0.0, 0.0};
  c.int8_macs_per_s = avx512 && f.avx512_vnni ? rate(vnni_loop_avx512, 64) : rate(maddubs_loop_avx2, 32, ymm);
  c.int16_macs_per_s = avx512 ? rate(madd_loop_avx512, 32) : rate(madd_loop_avx2, 16, ymm);
  c.fp32_fmas_per_s = avx512 ? rate(fma_loop_avx512, 16) : rate(fma_loop_avx2, 8, ymm);
  c.hamming_bits_per_s = avx512 && f.avx512_vpopcntdq
                             ? rate(hamming_loop_avx512, 512)
                             : std::max(rate(popcnt_loop_avx2, 64), rate(popcount_lut_loop_avx2, 256, ymm));
  return c;
}

}  // namespace fastembed_rt::cpu
