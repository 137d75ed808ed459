// This machine's compute ceilings for the kernels' instruction mixes at the active ISA, measured on
// register-resident data on every thread: what a kernel's throughput is a fraction of.
#pragma once

#include <cstdint>

#include "isa.h"

namespace fastembed_rt::cpu {

struct Ceilings {
  Isa isa;
  double int8_macs_per_s;     // AVX-512 VNNI: vpdpbusd (64 int8 multiply-adds); else AVX2 vpmaddubsw + vpmaddwd
                              // by ones + vpaddd (32: the int8 kernels without VNNI, on 7-bit operands)
  double int16_macs_per_s;    // vpmaddwd + vpaddd (32 or 16 int16 multiply-adds: exact for any int8 values)
  double fp32_fmas_per_s;     // vfmadd: 16 (zmm) or 8 (ymm) float32 fused multiply-adds
  double hamming_bits_per_s;  // AVX-512 VPOPCNTDQ: xor + vpopcntq + add over 512 bits; else the faster of
                              // xor + popcnt + add over 64 bits and the vpshufb nibble counts of 256 bits
};

// Whether the active ISA has ceiling loops (AVX2 or better).
bool ceilings_supported();
// Runs each loop for about `seconds` on `num_threads` threads.
Ceilings measure_ceilings(int num_threads, double seconds);

namespace kernels {
// Each runs `iterations` rounds of kCeilingChains (AVX2 vector loops: kVectorChainsAvx2) independent chains and
// returns a value so the work is kept.
constexpr int64_t kCeilingChains = 16;
// AVX2's loops: 16 chains with their constants and temporaries would not fit in 16 ymm registers, and the
// spills would slow them down; 10 still hide the latencies.
constexpr int64_t kVectorChainsAvx2 = 10;
int64_t vnni_loop_avx512(int64_t iterations);
int64_t madd_loop_avx512(int64_t iterations);
float fma_loop_avx512(int64_t iterations);
int64_t hamming_loop_avx512(int64_t iterations);
int64_t maddubs_loop_avx2(int64_t iterations);
int64_t madd_loop_avx2(int64_t iterations);
float fma_loop_avx2(int64_t iterations);
int64_t popcnt_loop_avx2(int64_t iterations);
int64_t popcount_lut_loop_avx2(int64_t iterations);
}  // namespace kernels

}  // namespace fastembed_rt::cpu
