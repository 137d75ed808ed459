#include "cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <cstdint>
#endif

namespace fastembed_rt::cpu {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;
  f.amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // "Auth" "enti" "cAMD"
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  if (!osxsave) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // SSE and AVX state
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = os_avx && (ebx & (1u << 5));
  f.fma = os_avx && fma;
  f.f16c = os_avx && f16c;
  f.bmi2 = ebx & (1u << 8);
  f.avx512f = os_avx512 && (ebx & (1u << 16));
  f.avx512bw = f.avx512f && (ebx & (1u << 30));
  f.avx512cd = f.avx512f && (ebx & (1u << 28));
  f.avx512dq = f.avx512f && (ebx & (1u << 17));
  f.avx512vl = f.avx512f && (ebx & (1u << 31));
  f.avx512_vnni = f.avx512f && (ecx & (1u << 11));
  f.avx512_vpopcntdq = f.avx512f && (ecx & (1u << 14));
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG, XTILEDATA
  f.amx_bf16 = os_amx && (edx & (1u << 24)) && (edx & (1u << 22));  // AMX-TILE, AMX-BF16
  f.amx_int8 = os_amx && (edx & (1u << 24)) && (edx & (1u << 25));  // AMX-TILE, AMX-INT8
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  f.avx512_bf16 = f.avx512f && (eax & (1u << 5));
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace fastembed_rt::cpu
