#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu_features.h"

namespace fastembed_rt::cpu {
namespace {

Isa initial_isa() {
  Isa isa;
  const char* env = std::getenv("FASTEMBED_RT_ISA");
  if (env != nullptr && parse_isa_name(env, &isa) && isa_supported(isa)) return isa;
  return best_isa();  // unset, "auto", or refused with a message by the Python package at import
}

std::atomic<int32_t>& active() {
  static std::atomic<int32_t> isa{static_cast<int32_t>(initial_isa())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

bool parse_isa_name(const char* name, Isa* isa) {
  for (Isa candidate : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (std::strcmp(name, isa_name(candidate)) == 0) {
      *isa = candidate;
      return true;
    }
  }
  return false;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return f.avx2 && f.fma && f.bmi2 && f.f16c;
    case Isa::kAvx512: return isa_supported(Isa::kAvx2) && f.avx512f && f.avx512bw && f.avx512cd && f.avx512dq && f.avx512vl;
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kScalar})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() { return supported_isas().front(); }

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) { active().store(static_cast<int32_t>(isa), std::memory_order_relaxed); }

}  // namespace fastembed_rt::cpu
