// Softmax attention over packed variable-length sequences (flash-attn's varlen layout): each sequence's keys
// in blocks of up to 512 with an online softmax across blocks; no padding, and no score matrix in memory
// beyond one block's scores for a register's width of queries.
#pragma once

#include <cstdint>

#include "vector_math.h"

namespace fastembed_rt::cpu {

struct AttentionShape {
  int64_t num_seqs;
  int64_t num_heads;     // query heads
  int64_t num_kv_heads;  // divides num_heads (grouped-query attention when smaller)
  int64_t head_dim;
  // Elements between consecutive tokens; heads are head_dim apart, and a head's values are contiguous.
  int64_t q_token_stride, k_token_stride, v_token_stride;
};

// How bfloat16 q, k and v are multiplied: on AMX tiles, by AVX512_BF16 dot products (two multiply-adds per lane
// per instruction), both with the probabilities rounded to bfloat16 for P V, or widened to float32 for the float32
// kernel. The CPU's choice: AMX where it applies; else the dot products on AMD only: Intel cores issue vdpbf16ps
// at half their FMA rate, and on the model-167 Xeon (Intel, AVX512_BF16) the dot products took 1.3-1.7x the time
// of widening (512-token sequences, heads of 32 to 128). kAmx and kDot are refused where their kernel cannot run
// (bf16_kernel_applies).
enum class Bf16Products { kCpuChoice, kAmx, kDot, kWidened };

// What some models add on top of plain (causal) attention, all within each sequence:
// a sliding window (ModernBERT, Mistral, Gemma 3): key j is seen by query i only if i - left <= j <= i + right
// (flash-attn's window_size; -1: no limit on that side); a relative position bias (MPNet): relative_bias
// [num_heads][2 * bias_radius + 1] adds relative_bias[h][bias_radius + j - i] to each (pre-softmax) score;
// key lengths [num_seqs] (ColBERT's query expansion): only the first key_lengths[s] tokens of sequence s are
// keys, while all of its tokens are queries (1 <= key_lengths[s] <= its length, unless it is empty).
struct AttentionExtras {
  int64_t window_left = -1, window_right = -1;
  const float* relative_bias = nullptr;
  int64_t bias_radius = 0;  // at least the longest sequence minus one
  const int32_t* key_lengths = nullptr;
  Bf16Products bf16_products = Bf16Products::kCpuChoice;
};

// Whether the AMX or the dot-product kernel can run these (AMX or AVX512_BF16 at the active ISA; a head size
// that is a multiple of 32 or even; no extras), and which kernel this CPU takes where all can run.
bool bf16_kernel_applies(Bf16Products kernel, const AttentionShape& shape, const AttentionExtras& extras);
Bf16Products bf16_cpu_choice();

// q: [T, num_heads, head_dim], k and v: [T, num_kv_heads, head_dim] (strided as above);
// out: [T, num_heads, head_dim] contiguous. Sequence s is tokens cu_seqlens[s]..cu_seqlens[s+1].
// causal: token i attends to tokens <= i of its own sequence. Computed in float32; the caller checks sizes.
template <typename T>
void attention_varlen(const T* q, const T* k, const T* v, T* out, const int32_t* cu_seqlens,
                      const AttentionShape& shape, float scale, bool causal, int num_threads,
                      const AttentionExtras& extras = {});

}  // namespace fastembed_rt::cpu
