// Run-time detection of the x86 instruction-set extensions the CPU kernels can use.
#pragma once

namespace fastembed_rt::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool bmi2 = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512cd = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_vpopcntdq = false;
  bool amx_bf16 = false;  // AMX tiles with bfloat16 products, tile state enabled by the OS
  bool amx_int8 = false;  // AMX tiles with int8 products, tile state enabled by the OS
  bool amd = false;  // vendor AuthenticAMD
};

// Features both the CPU reports (cpuid) and the OS saves across context switches (xgetbv).
const CpuFeatures& cpu_features();

}  // namespace fastembed_rt::cpu
