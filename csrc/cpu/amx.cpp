#include "amx.h"

#include <sys/syscall.h>

#include <atomic>
#include <unistd.h>

#include "cpu_features.h"
#include "isa.h"

#pragma GCC target("amx-tile")
#include <immintrin.h>

namespace fastembed_rt::cpu::kernels {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

// A constant: GCC 12 dropped the stores of a configuration filled on the stack before ldtilecfg read it.
constexpr uint16_t kB = kTileRowBytes;
constexpr uint8_t kR = kTileRows;
constexpr TileConfig kTileConfig = {1, 0, {}, {kB, kB, kB, kB, kB, kB, kB, kB}, {kR, kR, kR, kR, kR, kR, kR, kR}};

// Linux hands out AMX's 8 KiB of tile state only to processes that ask (ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA); until then the first tile instruction faults. A forked child inherits the permission.
bool tiles_permitted() {
  static const bool permitted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return permitted;
}

std::atomic<bool> allowed{true};

}  // namespace

bool amx_bf16_ready() {
  const CpuFeatures& f = cpu_features();
  return f.amx_bf16 && f.avx512_bf16 && active_isa() == Isa::kAvx512 && allowed && tiles_permitted();
}

bool amx_int8_ready() {
  const CpuFeatures& f = cpu_features();
  return f.amx_int8 && f.avx512_vnni && active_isa() == Isa::kAvx512 && allowed && tiles_permitted();
}

bool set_amx_allowed(bool allow) { return allowed.exchange(allow); }

void configure_tiles() { _tile_loadconfig(&kTileConfig); }

}  // namespace fastembed_rt::cpu::kernels
