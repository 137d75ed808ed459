// This machine's compute ceilings for the similarity kernels' instruction mixes, measured on register-
// resident data on every thread: what a kernel's throughput is a fraction of.
#pragma once

#include <cstdint>

namespace fastembed_rt::cpu {

struct Ceilings {
  double int8_macs_per_s;     // VNNI vpdpbusd: 64 int8 multiply-adds each
  double fp32_fmas_per_s;     // vfmadd: 16 float32 fused multiply-adds each
  double hamming_bits_per_s;  // xor + popcount + add over 512 bits
};

// Runs each loop for about `seconds` on `num_threads` threads. Needs the AVX-512 path (isa_supported).
Ceilings measure_ceilings(int num_threads, double seconds);

namespace kernels {
// Each runs `iterations` rounds of 16 independent chains and returns a value so the work is kept.
int64_t vnni_loop(int64_t iterations);
float fma_loop(int64_t iterations);
int64_t hamming_loop(int64_t iterations);
constexpr int64_t kCeilingChains = 16;
}  // namespace kernels

}  // namespace fastembed_rt::cpu
