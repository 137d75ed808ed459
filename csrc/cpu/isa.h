// The instruction set every kernel of ours runs with: the best this CPU supports, or a lower one asked for
// (FASTEMBED_RT_ISA=scalar|avx2|avx512), so that an AVX-512 machine can run, test and time the AVX2 and
// baseline paths exactly as an older CPU would.
#pragma once

#include <cstdint>
#include <vector>

namespace fastembed_rt::cpu {

// kAvx2: x86-64-v3 (AVX2, FMA, BMI2, F16C). kAvx512: x86-64-v4 (AVX-512 F, BW, CD, DQ, VL); the extensions
// beyond it (VNNI, BF16, VPOPCNTDQ) are checked by the kernels that use them (cpu_features()).
enum class Isa : int32_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
// Parses "scalar", "avx2" or "avx512"; returns false for anything else.
bool parse_isa_name(const char* name, Isa* isa);
bool isa_supported(Isa isa);
std::vector<Isa> supported_isas();  // best first
Isa best_isa();

// The ISA the kernels use. Starts as FASTEMBED_RT_ISA when set to one this CPU supports, else best_isa().
Isa active_isa();
// The caller checks isa_supported(isa). Kernels already running finish on the ISA they started with.
void set_active_isa(Isa isa);

// Whether active_isa() is at least `wanted`.
inline bool isa_at_least(Isa wanted) { return static_cast<int32_t>(active_isa()) >= static_cast<int32_t>(wanted); }

// `isa` for a kernel whose AVX-512 build also needs an extension (VNNI, BF16, VPOPCNTDQ): without it, AVX2.
inline Isa with_extension(Isa isa, bool extension) { return isa == Isa::kAvx512 && !extension ? Isa::kAvx2 : isa; }

}  // namespace fastembed_rt::cpu
