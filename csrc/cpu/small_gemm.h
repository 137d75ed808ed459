// Linear layers on weights packed once into 16-column panels: each panel is streamed once per block of rows
// while a few rows accumulate in registers. They serve the fused encoder's small batches, where a GEMM
// library's per-call overhead would dominate, and any batch whose weights no library here computes fast:
// bfloat16 without native bfloat16 and int8 without VNNI. Kernels per ISA (small_gemm_avx512.cpp: FMA,
// AVX512_BF16, VNNI; small_gemm_avx2.cpp: FMA, bfloat16 widened to float32, int8 widened to int16 for
// vpmaddwd); callers check small_gemm_supported().
#pragma once

#include <cstdint>
#include <vector>

#include "activations.h"
#include "isa.h"

namespace fastembed_rt::cpu {

enum class WeightKind : int32_t { kFloat32 = 0, kBFloat16 = 1, kInt8 = 2 };

// Whether the active ISA has kernels for this kind (AVX2 or better).
bool small_gemm_supported(WeightKind kind);
// The kernel set a layer of this kind is packed for under the active ISA: AVX-512 only with the extension
// its kind needs (AVX512_BF16, VNNI), AVX2 otherwise.
Isa small_gemm_isa(WeightKind kind);

// A linear layer's weights [n, k] in panel layout, for the kernels of `isa`:
//   float32, any ISA:  f32 [n/16][k][16]
//   bfloat16, AVX-512: bf16 [n/16][k/2][16][2] (vdpbf16ps pairs)
//   bfloat16, AVX2:    bf16 [n/16][k][16], columns in the order 0-3, 8-11, 4-7, 12-15 (so that vpunpck{l,h}wd
//                      against zero widens them to float32 columns 0-7 and 8-15)
//   int8, AVX-512, and AVX2 with every weight in [-63, 63] (`narrow`) or with `asymmetric_input`:
//                      i8 [n/16][k/4][16][4], with column sums (x goes in as unsigned codes, its signed codes plus
//                      a zero point, for vpdpbusd and vpmaddubsw, and the epilogue takes zero * column sum back off).
//                      vpmaddubsw's int16 pair sums cannot saturate: 2*255*63 < 2^15 for 7-bit weights against
//                      8-bit codes (zero point 128), 2*127*128 < 2^15 for any weights against 7-bit codes (per-row
//                      zero points in [0, 127]: quantize_rows' asymmetric form)
//   int8, AVX2, other: i8 [n/16][k/2][16][2], sign-extended to int16 as they load (vpmaddwd pairs; exact for any
//                      int8 weights)
// int8 layers keep per-column scales.
struct PackedLinear {
  WeightKind kind = WeightKind::kFloat32;
  Isa isa = Isa::kAvx2;
  bool narrow = false;
  // int8 on AVX2 only, not narrow, asked for at packing: x is quantized per row to asymmetric 7-bit codes
  // (int8_linear.h), for a layer whose input is almost all of one sign (a GELU output), where those are as fine
  // as 8-bit symmetric codes; vpmaddubsw then runs its 8-bit weights, twice vpmaddwd's multiply-adds per instruction.
  bool asymmetric_input = false;
  int64_t n = 0, k = 0, k_padded = 0, panels = 0;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<int8_t> i8;
  std::vector<int32_t> column_sums;  // int8 with unsigned x codes only
  std::vector<float> column_scales;  // int8 only
  std::vector<float> bias;           // [n] float32, empty when absent
};

// The largest int8 weight magnitude the AVX2 vpmaddubsw kernels take.
constexpr int kNarrowInt8 = 63;

// weight: [n, k] row-major in the kind's storage (float, bfloat16 bits, int8 codes); scales: [n] for int8.
// asymmetric_input: see PackedLinear (ignored where it does not apply).
PackedLinear pack_linear(WeightKind kind, const void* weight, int64_t n, int64_t k, const float* column_scales,
                         const float* bias, bool asymmetric_input = false);

// The weight [n, k] back in the storage it was packed from (float, bfloat16 bits, int8 codes).
void unpack_linear(const PackedLinear& p, void* weight);
// A bfloat16 layer packed for AVX2 (no native bfloat16) as float32 out [k, n], the transposed weight, for a
// float32 GEMM library to run the large batches, where it beats the panel kernels.
void widen_bfloat16(const PackedLinear& p, float* out, int num_threads);
// The memory the packed layer holds.
int64_t packed_bytes(const PackedLinear& p);

// A layer's input rows: float32 [m, k]; or (int8 layers without asymmetric_input only) rows already quantized
// as quantize_rows does symmetrically, int8 codes [m, k] and scales [m] (a corpus stored as int8 token codes:
// nothing to quantize per call); or bfloat16 rows [m, k] (a corpus stored as bfloat16, which a float32 layer
// widens; an int8 layer in small_linear quantizes them as they are).
struct RowsIn {
  const float* floats = nullptr;
  const int8_t* codes = nullptr;
  const float* scales = nullptr;
  const uint16_t* bf16 = nullptr;
};

// out [m, n] float32 = act(x [m, k] float32 . W^T + bias). int8 layers quantize each row of x as quantize_rows
// does (symmetric, or asymmetric for asymmetric_input) and dequantize with row scale x column scale, as dequantize_rows
// does. bfloat16 layers on AVX-512 round x to bfloat16 (their products are bfloat16 dot products); on AVX2 they take
// float32 x as it is against the weights widened exactly to float32; with round_output both round their result to
// bfloat16 (as a bfloat16 GEMM's output would be).
// `scratch` is reused; the output panels are split across `num_threads` workers of the persistent pool.
void small_linear(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads);
// The same for x given as RowsIn: float32 rows, or bfloat16 rows (a bfloat16 layer's output feeding an int8 one:
// quantized as they are); not as codes.
void small_linear(const PackedLinear& w, const RowsIn& x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads);

// out [m, down.n] float32 = down(act(up(x))): a feed-forward block, x float32 or bfloat16 rows (RowsIn). Where both
// layers run int8 on AMX tiles, each worker takes chunks of rows through both, the up projection's activations
// kept in the worker's cache (never written out for the whole batch); elsewhere the two small_linear calls. The
// result equals those two calls' bit for bit. up.n must equal down.k.
void small_feed_forward(const PackedLinear& up, const PackedLinear& down, const RowsIn& x, int64_t m, Activation act,
                        float* out, int num_threads);

// How pooled_linear reduces each sequence's rows, term by term: SPLADE's max or sum of
// log1p(relu(v)) ("relu"), or of log1p(log1p(relu(v))) ("log1p_relu").
enum class TermPooling : int32_t { kMax = 0, kSum = 1 };
enum class TermActivation : int32_t { kRelu = 0, kLog1pRelu = 1 };

// out [num_seqs, n] float32: for each sequence s (rows cu_seqlens[s] to cu_seqlens[s+1] of x [m, k]), the
// pooling over its rows of activation(x . W^T + bias), with the reduction done in the kernels' epilogue, so
// the [m, n] product is never written (a vocabulary projection: n ~ 30,000). An empty sequence gives zeros.
// cu_seqlens must start at 0 and not decrease (the caller checks it); m = cu_seqlens[num_seqs].
void pooled_linear(const PackedLinear& w, const float* x, const int32_t* cu_seqlens, int64_t num_seqs,
                   TermPooling pooling, TermActivation activation, float* out, std::vector<uint8_t>& scratch,
                   int num_threads);

// out [num_seqs, n] float32: for each sequence, the largest x . W^T + bias over its rows (no floor; -inf for an
// empty sequence). With W the tokens of queries and x the tokens of documents: the max half of MaxSim.
void max_linear(const PackedLinear& w, const RowsIn& x, const int32_t* cu_seqlens, int64_t num_seqs, float* out,
                std::vector<uint8_t>& scratch, int num_threads);

}  // namespace fastembed_rt::cpu
