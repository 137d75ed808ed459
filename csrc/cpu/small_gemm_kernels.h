// The per-ISA bodies of small_gemm.h, each compiled for its instruction set in its own file.
#pragma once

#include <xmmintrin.h>

#include <cstdint>

#include "small_gemm.h"

namespace fastembed_rt::cpu {

constexpr int64_t kPanel = 16;  // output columns per panel: one 512-bit or two 256-bit float32 vectors
// How far ahead of the weights being read the kernels prefetch. A query's few rows leave the hardware prefetchers
// too little time per line: at 8 rows, float32 layers out of cache streamed at 12 GB/s on 2 threads through the AVX2
// kernels without it and 28 GB/s with it, and a query's AVX-512 forward took 16% less (Emerald Rapids Xeon,
// 2026-12-06). The panels are contiguous, so the stream runs on into the next panel.
constexpr int64_t kPrefetchBytes = 4096;
// The address kPrefetchBytes past w, as an integer: near a layer's end it lies past the buffer, which a prefetch
// tolerates but a pointer may not point to.
inline uintptr_t prefetch_address(const void* w) { return reinterpret_cast<uintptr_t>(w) + kPrefetchBytes; }

// Whether an int8 layer takes x as unsigned byte codes (code + zero point: vpdpbusd, vpmaddubsw) rather than
// int16 (vpmaddwd), and so 4 k per group rather than 2.
bool byte_codes(const PackedLinear& p);
// Whether the kernels read x as float32 rows [m, k] as given (no preparing pass): float32 layers, and bfloat16 ones
// on AVX2, whose weights are widened to float32 to meet x as it is (no bfloat16 product that would round x).
bool reads_float_rows(const PackedLinear& p);
// Bytes per x code of an int8 layer in small_linear's scratch, where the m row scales and then the m row zero
// points (int32: 128, or quantize_rows' asymmetric ones) follow the [m, k_padded] codes.
int64_t code_bytes(const PackedLinear& p);
// k values per packed group: what one 32-bit lane of a dot-product instruction takes.
int64_t group_of(const PackedLinear& p);
// Whether an int8 layer runs its whole tiles of rows on AMX (kernels::amx_int8_ready; packed for AVX-512, whose int8
// layers pad k to whole tiles of 64).
bool int8_on_tiles(const PackedLinear& p);

// What a max kernel prefetches as it goes, so that the next chunk of rows is in cache when its turn comes (then
// read at cache speed by the pass that prepares it, or by the kernel itself): while it computes row r of its
// chunk, row r of `rows` (row_bytes each). rows == 0: nothing.
// rows is an address, not a pointer: past the last chunk it lies past the buffer, which a prefetch tolerates.
struct RowPrefetch {
  uintptr_t rows = 0;
  int64_t row_bytes = 0;
};

// Prefetches lines [begin, end) of those from `ahead` on into L2.
inline void prefetch_lines(uintptr_t ahead, int64_t begin, int64_t end) {
  for (int64_t l = begin; l < end; ++l) _mm_prefetch(reinterpret_cast<const char*>(ahead + l * 64), _MM_HINT_T1);
}

// Where the kernels put row r's finished panel (bias, scales and activation applied): stored in row r of
// out [m, n] (a linear layer), or reduced into row row_sequence[r] of out [sequences, n] without the [m, n]
// product ever existing: kMax keeps the largest value (from out's starting value: 0 gives relu of the max, as
// SPLADE wants; -inf the max itself, as MaxSim does; the max kernels), kSum adds log1p applied `log1p_times`
// times to relu(value) (SPLADE's sum pooling; the linear kernels, as kStore).
struct PanelOutput {
  enum Mode : int32_t { kStore = 0, kMax = 1, kSum = 2 };
  float* out = nullptr;
  Mode mode = kStore;
  const int32_t* row_sequence = nullptr;
  int log1p_times = 1;
};

// Output panels [panel_begin, panel_end) of rows [row_begin, row_end). Layers that read float rows read x itself;
// the others read x as small_linear prepared it in `scratch` (AVX-512: bfloat16 rows or unsigned int8 codes; AVX2:
// unsigned int8 codes or int16 codes; then, for int8, the m row scales and zero points).
namespace kernels {
// The m row scales of an int8 layer's rows in the scratch (after the codes; the m zero points follow them).
inline const float* scratch_scales(const PackedLinear& w, const uint8_t* scratch, int64_t m) {
  return reinterpret_cast<const float*>(scratch + m * w.k_padded * code_bytes(w));
}
void linear_panels_avx512(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                          int64_t row_end, Activation act, bool round_output, const PanelOutput& out,
                          int64_t panel_begin, int64_t panel_end);
void linear_panels_avx2(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                        int64_t row_end, Activation act, bool round_output, const PanelOutput& out,
                        int64_t panel_begin, int64_t panel_end);
// For PanelOutput::kMax: the same products, rows [row_begin, row_end) taken by max into their sequences' rows of
// out, each run of one sequence's rows a block at a time with its maximum kept in registers (MaxSim, SPLADE's max).
// int8_tiles: whether an int8 layer may run on AMX tiles (int8_on_tiles) here (the AVX2 kernels have none).
void max_panels_avx512(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                       int64_t row_end, const PanelOutput& out, int64_t panel_begin, int64_t panel_end,
                       const RowPrefetch& prefetch, bool int8_tiles);
void max_panels_avx2(const PackedLinear& w, const float* x, const uint8_t* scratch, int64_t m, int64_t row_begin,
                     int64_t row_end, const PanelOutput& out, int64_t panel_begin, int64_t panel_end,
                     const RowPrefetch& prefetch, bool int8_tiles);
// Rows [begin, end) of x [m, k] (float32 or bfloat16 rows) into the scratch of an AVX-512 int8 layer, exactly as
// the generic preparation quantizes and places them (symmetric codes + 128, scales, zero points of 128).
void quantize_codes_avx512(const PackedLinear& w, const RowsIn& x, int64_t m, int64_t begin, int64_t end,
                           uint8_t* scratch);
// Columns of panels [panel_begin, panel_end) of an AVX2 bfloat16 layer as float32 into out [k, n].
void widen_bfloat16_panels_avx2(const PackedLinear& w, float* out, int64_t panel_begin, int64_t panel_end);
// One panel of one row as the PanelOutput wants it; lanes hold the 16 finished values, `cols` of them real.
void put_panel(const PanelOutput& o, int64_t n, int64_t r, int64_t p, float* lanes, int64_t cols);
}  // namespace kernels

}  // namespace fastembed_rt::cpu
