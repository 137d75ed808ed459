// AMX tiles (Intel Xeons from Sapphire Rapids on): whether this process may use them, and the one tile shape
// every AMX kernel here uses, 8 tiles of 16 rows x 64 bytes (16 x 32 bfloat16, 16 x 64 int8, 16 x 16 float32 or
// int32 sums).
#pragma once

#include <cstdint>

namespace fastembed_rt::cpu::kernels {

constexpr int64_t kTileRows = 16;
constexpr int64_t kTileRowBytes = 64;

// Whether the CPU has AMX tiles with bfloat16 (int8) products and this process may use them (asked of the
// kernel once), at the active ISA (AVX-512), unless set_amx_allowed(false).
bool amx_bf16_ready();
bool amx_int8_ready();

// Allows or forbids the AMX kernels for the whole process (the kernels they replace run instead); returns the
// previous setting. For measuring and testing those other kernels on a CPU with AMX.
bool set_amx_allowed(bool allowed);

// Loads the tile configuration into this thread's tile registers: each kernel calls it before its first tile
// instruction (another kernel on this thread may have loaded its own, or none).
void configure_tiles();

}  // namespace fastembed_rt::cpu::kernels
