// Packing and dispatch; the arithmetic is in small_gemm_avx512.cpp and small_gemm_avx2.cpp.
#include "small_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "amx.h"
#include "cpu_features.h"
#include "int8_linear.h"
#include "parallel.h"
#include "small_gemm_kernels.h"

namespace fastembed_rt::cpu {

bool small_gemm_supported(WeightKind) { return isa_at_least(Isa::kAvx2); }

Isa small_gemm_isa(WeightKind kind) {
  const CpuFeatures& f = cpu_features();
  const Isa isa = active_isa() == Isa::kAvx512 ? Isa::kAvx512 : Isa::kAvx2;
  if (kind == WeightKind::kBFloat16) return with_extension(isa, f.avx512_bf16);
  if (kind == WeightKind::kInt8) return with_extension(isa, f.avx512_vnni);
  return isa;
}

bool byte_codes(const PackedLinear& p) { return p.isa == Isa::kAvx512 || p.narrow || p.asymmetric_input; }

int64_t code_bytes(const PackedLinear& p) { return byte_codes(p) ? 1 : 2; }

bool reads_float_rows(const PackedLinear& p) {
  return p.kind == WeightKind::kFloat32 || (p.kind == WeightKind::kBFloat16 && p.isa == Isa::kAvx2);
}

bool int8_on_tiles(const PackedLinear& p) {
  return p.kind == WeightKind::kInt8 && p.isa == Isa::kAvx512 && p.k_padded % kernels::kTileRowBytes == 0 &&
         kernels::amx_int8_ready();
}

int64_t group_of(const PackedLinear& p) {
  if (p.kind == WeightKind::kFloat32) return 1;
  if (p.kind == WeightKind::kBFloat16) return p.isa == Isa::kAvx512 ? 2 : 1;
  return byte_codes(p) ? 4 : 2;
}

namespace {

// The AVX2 bfloat16 panel's slot for column c: the middle two groups of four swap places.
int64_t widening_slot(int64_t c) { return (c & ~int64_t{12}) | ((c & 4) << 1) | ((c & 8) >> 1); }

// Where weight element (row c = output column c, input index i) lives in p's panels: panel c/16, then
// k-group i/group, then column c%16, then i%group: a panel's k-group is 16 consecutive lanes.
int64_t panel_index(const PackedLinear& p, int64_t c, int64_t i) {
  const int64_t group = group_of(p);
  const int64_t column = p.kind == WeightKind::kBFloat16 && p.isa == Isa::kAvx2 ? widening_slot(c % kPanel) : c % kPanel;
  return ((c / kPanel) * (p.k_padded / group) + i / group) * kPanel * group + column * group + i % group;
}

}  // namespace

PackedLinear pack_linear(WeightKind kind, const void* weight, int64_t n, int64_t k, const float* column_scales,
                         const float* bias, bool asymmetric_input) {
  PackedLinear p;
  p.kind = kind;
  p.isa = small_gemm_isa(kind);
  p.n = n;
  p.k = k;
  p.panels = (n + kPanel - 1) / kPanel;
  if (kind == WeightKind::kInt8 && p.isa == Isa::kAvx2) {
    const auto* w = static_cast<const int8_t*>(weight);
    p.narrow = std::all_of(w, w + n * k, [](int8_t v) { return v >= -kNarrowInt8 && v <= kNarrowInt8; });
    p.asymmetric_input = asymmetric_input && !p.narrow;
  }
  // int8 for AVX-512 pads k to whole AMX tiles (64 codes), so that the CPUs with them can run them
  const int64_t pad = kind == WeightKind::kInt8 && p.isa == Isa::kAvx512 ? kernels::kTileRowBytes : group_of(p);
  p.k_padded = (k + pad - 1) / pad * pad;
  const int64_t size = p.panels * p.k_padded * kPanel;
  if (kind == WeightKind::kFloat32) {
    p.f32.assign(size, 0.0f);
    const auto* w = static_cast<const float*>(weight);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < k; ++i) p.f32[panel_index(p, c, i)] = w[c * k + i];
  } else if (kind == WeightKind::kBFloat16) {
    p.bf16.assign(size, 0);
    const auto* w = static_cast<const uint16_t*>(weight);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < k; ++i) p.bf16[panel_index(p, c, i)] = w[c * k + i];
  } else {
    const auto* w = static_cast<const int8_t*>(weight);
    p.i8.assign(size, 0);
    if (byte_codes(p)) p.column_sums.assign(p.panels * kPanel, 0);
    p.column_scales.assign(p.panels * kPanel, 0.0f);
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t i = 0; i < k; ++i) {
        p.i8[panel_index(p, c, i)] = w[c * k + i];
        if (byte_codes(p)) p.column_sums[c] += w[c * k + i];
      }
      p.column_scales[c] = column_scales[c];
    }
  }
  if (bias) p.bias.assign(bias, bias + n);
  return p;
}

void unpack_linear(const PackedLinear& p, void* weight) {
  for (int64_t c = 0; c < p.n; ++c) {
    for (int64_t i = 0; i < p.k; ++i) {
      const int64_t at = panel_index(p, c, i), to = c * p.k + i;
      if (p.kind == WeightKind::kFloat32) {
        static_cast<float*>(weight)[to] = p.f32[at];
      } else if (p.kind == WeightKind::kBFloat16) {
        static_cast<uint16_t*>(weight)[to] = p.bf16[at];
      } else {
        static_cast<int8_t*>(weight)[to] = p.i8[at];
      }
    }
  }
}

void widen_bfloat16(const PackedLinear& p, float* out, int num_threads) {
  parallel_for(p.panels, threads_for(static_cast<double>(p.n) * p.k, num_threads),
               [&](int64_t begin, int64_t end) { kernels::widen_bfloat16_panels_avx2(p, out, begin, end); });
}

int64_t packed_bytes(const PackedLinear& p) {
  return static_cast<int64_t>(p.f32.size() * 4 + p.bf16.size() * 2 + p.i8.size() +
                              (p.column_sums.size() + p.column_scales.size() + p.bias.size()) * 4);
}

namespace {

// Signed int8 code rows [begin, end) of codes [.., k] into the rows the int8 kernels read (k_padded each):
// unsigned (code + the row's zero point) for vpdpbusd / vpmaddubsw, int16 for vpmaddwd.
void place_codes(const PackedLinear& w, const int8_t* codes, const int32_t* zeros, int64_t begin, int64_t end,
                 uint8_t* scratch) {
  const int64_t k = w.k, kp = w.k_padded;
  const bool bytes = byte_codes(w);
  for (int64_t r = begin; r < end; ++r) {
    const int8_t* cr = codes + r * k;
    if (bytes) {
      uint8_t* row = scratch + r * kp;
      const int32_t zero = zeros[r];
      for (int64_t i = 0; i < k; ++i) row[i] = static_cast<uint8_t>(cr[i] + zero);
      std::fill(row + k, row + kp, static_cast<uint8_t>(zero));
    } else {
      int16_t* row = reinterpret_cast<int16_t*>(scratch) + r * kp;
      for (int64_t i = 0; i < k; ++i) row[i] = cr[i];
      std::fill(row + k, row + kp, int16_t{0});
    }
  }
}

// x (float32 rows; bfloat16 rows for an int8 layer) as the kernels read it (see small_gemm_kernels.h), rows
// zero-padded to k_padded. bfloat16 layers on AVX-512 round x to nearest even; int8 layers quantize it exactly as
// quantize_rows does.
void prepare_rows(const PackedLinear& w, const RowsIn& rows, int64_t m, uint8_t* scratch, int num_threads) {
  const int64_t k = w.k, kp = w.k_padded;
  const float* x = rows.floats;
  if (w.kind == WeightKind::kBFloat16) {  // AVX-512 (on AVX2 the kernels read float32 rows as they are)
    parallel_for(m, threads_for(static_cast<double>(m) * k, num_threads), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        bf16* row = reinterpret_cast<bf16*>(scratch) + r * kp;
        for (int64_t i = 0; i < k; ++i) row[i] = from_float<bf16>(x[r * k + i]);
        std::fill(row + k, row + kp, bf16{0});
      }
    });
  } else if (w.kind == WeightKind::kInt8 && w.isa == Isa::kAvx512) {
    parallel_for(m, threads_for(static_cast<double>(m) * k, num_threads), [&](int64_t begin, int64_t end) {
      kernels::quantize_codes_avx512(w, rows, m, begin, end, scratch);
    });
  } else if (w.kind == WeightKind::kInt8) {
    auto* scales = reinterpret_cast<float*>(scratch + m * kp * code_bytes(w));
    auto* zeros = reinterpret_cast<int32_t*>(scales + m);
    auto* codes = reinterpret_cast<int8_t*>(zeros + m);  // [m, k], then widened or shifted into place
    int32_t* asymmetric = w.asymmetric_input ? zeros : nullptr;
    if (rows.bf16) {
      quantize_rows<bf16>(reinterpret_cast<const bf16*>(rows.bf16), m, k, codes, scales, asymmetric, num_threads);
    } else {
      quantize_rows<float>(x, m, k, codes, scales, asymmetric, num_threads);
    }
    if (!w.asymmetric_input) std::fill(zeros, zeros + m, 128);  // symmetric codes + 128: unsigned bytes
    parallel_for(m, threads_for(static_cast<double>(m) * k, num_threads),
                 [&](int64_t begin, int64_t end) { place_codes(w, codes, zeros, begin, end, scratch); });
  }
}

// Rows already quantized symmetrically (int8 codes [m, k] and their scales [m], as quantize_rows makes them) as
// an int8 layer's kernels read them: the layout prepare_rows writes, without quantizing again.
void prepare_codes(const PackedLinear& w, const int8_t* codes, const float* scales, int64_t m, uint8_t* scratch) {
  auto* placed_scales = reinterpret_cast<float*>(scratch + m * w.k_padded * code_bytes(w));
  auto* zeros = reinterpret_cast<int32_t*>(placed_scales + m);
  std::copy(scales, scales + m, placed_scales);
  std::fill(zeros, zeros + m, 128);
  place_codes(w, codes, zeros, 0, m, scratch);
}

// bfloat16 rows [m, k] as the kernels read them: as they are (a bfloat16 layer on AVX-512) or widened to float32
// (exact: a layer that reads float rows), rows zero-padded to k_padded.
void prepare_bfloat16_rows(const PackedLinear& w, const uint16_t* x, int64_t m, uint8_t* scratch) {
  const int64_t k = w.k, kp = w.k_padded;
  for (int64_t r = 0; r < m; ++r) {
    const uint16_t* xr = x + r * k;
    if (reads_float_rows(w)) {  // as float_rows() then hands them to the kernels
      float* row = reinterpret_cast<float*>(scratch) + r * kp;
      for (int64_t i = 0; i < k; ++i) row[i] = to_float(bf16{xr[i]});
      std::fill(row + k, row + kp, 0.0f);
    } else {
      uint16_t* row = reinterpret_cast<uint16_t*>(scratch) + r * kp;
      std::copy(xr, xr + k, row);
      std::fill(row + k, row + kp, uint16_t{0});
    }
  }
}

// Rows per pass over the weights: a block of x (<= 256 KiB for k = 384) stays in L2 while every panel of
// this worker streams past it, instead of x streaming from memory once per panel.
constexpr int64_t kRowChunk = 120;  // a multiple of both kernels' row blocks (8 and 6)
// On AMX tiles: a multiple of their 32-row blocks. 4,000 rows of MiniLM's int8 layers (model-167 Xeon, best of 30 in
// one process): 384 -> 1,536 took 1.61 ms in chunks of 32 rows, 1.72 of 64, 1.83 of 128; 384 -> 384 0.63 / 0.65 /
// 0.68 ms; 1,536 -> 384 2.06 / 2.08 / 1.99 ms.
constexpr int64_t kTileRowChunk = 32;
// The max kernels' chunks: up to this many bytes of x rows, so that short rows (MaxSim's 128 dims) come in long
// chunks, which cut fewer of a sequence's runs of rows in two.
constexpr int64_t kMaxChunkBytes = 512 << 10;

// The bytes of one row of x as the kernels read it: float32 rows, or scratch's bfloat16 rows (AVX-512), int16 or
// byte codes.
int64_t row_bytes(const PackedLinear& w) {
  if (reads_float_rows(w)) return w.k * 4;
  if (w.kind == WeightKind::kBFloat16) return w.k_padded * 2;
  return w.k_padded * code_bytes(w);
}

// The panels of `w` for rows [0, m) into `o`: the workers split the panels (so no two write the same
// columns), each taking its rows a chunk at a time. kMax runs the max kernels, which prefetch as `prefetch` says
// and may take int8 on AMX tiles as `int8_tiles` says; the others the linear kernels.
void run_panels(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output,
                const PanelOutput& o, const std::vector<uint8_t>& scratch, int num_threads,
                const RowPrefetch& prefetch = {}, bool int8_tiles = true) {
  // A panel streams 16 columns of weights; below ~64 KiB of weights per worker, one thread is faster.
  const int64_t element_bytes = w.kind == WeightKind::kFloat32 ? 4 : w.kind == WeightKind::kBFloat16 ? 2 : 1;
  const int64_t bytes = w.panels * kPanel * w.k_padded * element_bytes * ((m + kRowChunk - 1) / kRowChunk);
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, bytes / 65536)));
  if (o.mode == PanelOutput::kMax) {
    auto max_panels = w.isa == Isa::kAvx512 ? kernels::max_panels_avx512 : kernels::max_panels_avx2;
    // Longer chunks than kRowChunk where the rows are short (MaxSim's 128 dims): fewer runs cut at a chunk's end.
    const int64_t chunk = std::max(kRowChunk, kMaxChunkBytes / row_bytes(w));
    parallel_for(w.panels, threads, [&](int64_t begin, int64_t end) {
      for (int64_t r = 0; r < m; r += chunk) {
        max_panels(w, x, scratch.data(), m, r, std::min(m, r + chunk), o, begin, end, prefetch, int8_tiles);
      }
    });
    return;
  }
  auto panels = w.isa == Isa::kAvx512 ? kernels::linear_panels_avx512 : kernels::linear_panels_avx2;
  const int64_t chunk = int8_on_tiles(w) ? kTileRowChunk : kRowChunk;
  if (o.mode != PanelOutput::kStore) {  // sums into sequences' rows: each worker owns its columns for all rows
    parallel_for(w.panels, threads, [&](int64_t begin, int64_t end) {
      for (int64_t r = 0; r < m; r += chunk) {
        panels(w, x, scratch.data(), m, r, std::min(m, r + chunk), act, round_output, o, begin, end);
      }
    });
    return;
  }
  // Stored rows: items of a chunk of rows by a thread's share of the panels, taken in turn as each worker finishes
  // one (on a shared machine one core often runs slower, and a fixed split waited for it).
  const int64_t groups = threads, group = (w.panels + groups - 1) / groups, chunks = (m + chunk - 1) / chunk;
  parallel_for_each(chunks * groups, threads, [&](int, int64_t item) {
    const int64_t r = item / groups * chunk, begin = item % groups * group;
    panels(w, x, scratch.data(), m, r, std::min(m, r + chunk), act, round_output, o, begin,
           std::min(w.panels, begin + group));
  });
}

// x's rows from row `start` on (each k wide, scales one per row).
RowsIn rows_from(const RowsIn& x, int64_t start, int64_t k) {
  return {x.floats ? x.floats + start * k : nullptr, x.codes ? x.codes + start * k : nullptr,
          x.scales ? x.scales + start : nullptr, x.bf16 ? x.bf16 + start * k : nullptr};
}

// The float32 rows the kernels read for x: x's own, or (a layer that reads float rows, given bfloat16 rows) those
// prepare_scratch widened into the scratch.
const float* float_rows(const PackedLinear& w, const RowsIn& x, const std::vector<uint8_t>& scratch) {
  return x.bf16 && reads_float_rows(w) ? reinterpret_cast<const float*>(scratch.data()) : x.floats;
}

// Whether the kernels read x from prepare_scratch's layout rather than as given: all but float32 rows into a
// layer that reads float rows.
bool needs_scratch(const PackedLinear& w, const RowsIn& x) { return !reads_float_rows(w) || x.bf16; }

// Where x's rows are as given, and the bytes of each: what the max kernels prefetch of the next chunk.
RowPrefetch given_rows(const RowsIn& x, int64_t k) {
  if (x.codes) return {reinterpret_cast<uintptr_t>(x.codes), k};
  if (x.bf16) return {reinterpret_cast<uintptr_t>(x.bf16), k * 2};
  return {reinterpret_cast<uintptr_t>(x.floats), k * 4};
}

// x's rows [0, m) as the kernels read them, into `scratch`: bf16 rows (2 bytes), float rows, int16 or byte codes
// (4, 2, 1) [m, k_padded], then m scales, m zero points and the signed codes [m, k], under m * (k_padded + 16) * 4
// bytes. int8 rows given as codes are laid out without quantizing again, bfloat16 rows without rounding again;
// float32 layers read float32 x itself, bfloat16 x widened here.
void prepare_scratch(const PackedLinear& w, const RowsIn& x, int64_t m, std::vector<uint8_t>& scratch, int num_threads) {
  if (!needs_scratch(w, x)) return;
  scratch.resize(static_cast<size_t>(m) * (w.k_padded + kPanel) * 4);
  if (x.codes) {
    prepare_codes(w, x.codes, x.scales, m, scratch.data());
  } else if (x.bf16 && w.kind != WeightKind::kInt8) {
    prepare_bfloat16_rows(w, x.bf16, m, scratch.data());
  } else {
    prepare_rows(w, x, m, scratch.data(), num_threads);
  }
}

// Rows reduce_row_range prepares at a time: their codes (or bfloat16 rows) stay in cache for the panels that read
// them, and the scratch stays small whatever the row count (300,000 document tokens: 170 MB otherwise).
constexpr int64_t kPreparedRows = 4096;
// The max kernels take fewer at a time and prefetch the next chunk's rows as they compute one, so that preparing
// it reads from cache: otherwise the preparing pass waited on memory while nothing computed (MaxSim on int8 codes
// of 300,000 tokens: a third of the time).
constexpr int64_t kMaxPreparedRows = 512;

// Rows [r0, r1) of x, a chunk at a time, into `o` on `num_threads` threads (split over the panels).
void reduce_row_range(const PackedLinear& w, const RowsIn& x, int64_t r0, int64_t r1, PanelOutput o,
                      std::vector<uint8_t>& scratch, int num_threads) {
  const int32_t* row_sequence = o.row_sequence;
  const int64_t step = o.mode == PanelOutput::kMax ? kMaxPreparedRows : kPreparedRows;
  const RowPrefetch given = given_rows(x, w.k);
  const bool prepared = needs_scratch(w, x);
  // The max kernels take int8 on AMX tiles where the rows come as codes or the layer is wide. MaxSim's 32 query
  // tokens (2 panels) against float rows, quantized per call, ran 1.2x slower on tiles than on VNNI, whose longer
  // compute covers its prefetch of the next chunk; against stored codes 1.2x faster; SPLADE's vocabulary (1,908
  // panels) 3.4x faster (model-167 Xeon).
  const bool int8_tiles = x.codes || w.panels >= 4;
  for (int64_t start = r0; start < r1; start += step) {
    const int64_t rows = std::min(step, r1 - start);
    const RowsIn chunk = rows_from(x, start, w.k);
    prepare_scratch(w, chunk, rows, scratch, num_threads);
    o.row_sequence = row_sequence + start;
    const RowPrefetch next = prepared && start + rows < r1
                                 ? RowPrefetch{given.rows + (start + rows) * given.row_bytes, given.row_bytes}
                                 : RowPrefetch{};
    run_panels(w, float_rows(w, chunk, scratch), rows, Activation::kNone, false, o, scratch, num_threads, next, int8_tiles);
  }
}

// out [num_seqs, n] starts at `init`, then each row of x . W^T + bias is reduced into its sequence's row. A
// layer of many panels (a vocabulary) splits its panels over the threads; one of a few (a query's tokens) splits
// the sequences instead, so that each row is read once, while it is in cache, for all the panels.
void reduce_rows(const PackedLinear& w, const RowsIn& x, const int32_t* cu_seqlens, int64_t num_seqs,
                 PanelOutput::Mode mode, int log1p_times, float init, float* out, std::vector<uint8_t>& scratch,
                 int num_threads) {
  const int64_t m = cu_seqlens[num_seqs];
  std::fill(out, out + num_seqs * w.n, init);
  std::vector<int32_t> row_sequence(m);
  for (int64_t s = 0; s < num_seqs; ++s) std::fill(row_sequence.begin() + cu_seqlens[s], row_sequence.begin() + cu_seqlens[s + 1], s);
  const PanelOutput o{out, mode, row_sequence.data(), log1p_times};
  if (w.panels >= 4 * num_threads || num_seqs < 2) {
    reduce_row_range(w, x, 0, m, o, scratch, num_threads);
    return;
  }
  const int threads = threads_for(static_cast<double>(m) * w.k * w.n, num_threads);
  parallel_for(num_seqs, threads, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> local;  // each worker prepares its own rows
    reduce_row_range(w, x, cu_seqlens[begin], cu_seqlens[end], o, local, 1);
  });
}

}  // namespace

namespace kernels {

void put_panel(const PanelOutput& o, int64_t n, int64_t r, int64_t p, float* lanes, int64_t cols) {
  if (o.mode == PanelOutput::kStore) {
    std::copy(lanes, lanes + cols, o.out + r * n + p * kPanel);
    return;
  }
  float* row = o.out + static_cast<int64_t>(o.row_sequence[r]) * n + p * kPanel;
  for (int64_t j = 0; j < cols; ++j) {
    if (lanes[j] <= 0.0f) continue;  // relu: most logits of a vocabulary projection are negative
    float v = lanes[j];
    for (int t = 0; t < o.log1p_times; ++t) v = std::log1p(v);
    row[j] += v;
  }
}

}  // namespace kernels

namespace {

// An int8 layer on AMX tiles with a chunk of rows per worker: each worker quantizes its own kTileRowChunk rows at
// a time into its own scratch, which stays in cache while every panel passes over it, and the weights stay in each
// core's L2 across the chunks. (Split by panels, both workers read every row's codes, prepared for the whole
// batch first, from memory: at 4,096 x 1,536 -> 384 that took 1.5x as long.)
// `rows` rows of x through every panel of an int8 layer on this thread, into out [rows, w.n].
void int8_chunk(const PackedLinear& w, const RowsIn& x, int64_t rows, Activation act, float* out,
                std::vector<uint8_t>& scratch) {
  prepare_scratch(w, x, rows, scratch, 1);
  auto panels = w.isa == Isa::kAvx512 ? kernels::linear_panels_avx512 : kernels::linear_panels_avx2;
  panels(w, nullptr, scratch.data(), rows, 0, rows, act, false, PanelOutput{out}, 0, w.panels);
}

// fn(r0, rows, scratch) for the chunks of `chunk` rows of [0, m), each worker taking the next chunk when it finishes
// one (on a shared machine one core often runs slower, and a fixed split waited for it), with a scratch of its
// thread's own that stays between calls (a chunk's worth: never faulted in anew).
template <typename Fn>
void for_each_row_chunk(int64_t m, int64_t chunk, int num_threads, Fn fn) {
  parallel_for_each((m + chunk - 1) / chunk, num_threads, [&](int, int64_t c) {
    thread_local std::vector<uint8_t> scratch;
    const int64_t r0 = c * chunk;
    fn(r0, std::min(chunk, m - r0), scratch);
  });
}

void tiled_int8_linear(const PackedLinear& w, const RowsIn& x, int64_t m, Activation act, float* out, int threads) {
  for_each_row_chunk(m, kTileRowChunk, threads, [&](int64_t r0, int64_t rows, std::vector<uint8_t>& scratch) {
    int8_chunk(w, rows_from(x, r0, w.k), rows, act, out + r0 * w.n, scratch);
  });
}

}  // namespace

void small_linear(const PackedLinear& w, const RowsIn& x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads) {
  if (int8_on_tiles(w) && m >= num_threads * kTileRowChunk) return tiled_int8_linear(w, x, m, act, out, num_threads);
  prepare_scratch(w, x, m, scratch, num_threads);
  run_panels(w, float_rows(w, x, scratch), m, act, round_output, PanelOutput{out}, scratch, num_threads);
}

void small_linear(const PackedLinear& w, const float* x, int64_t m, Activation act, bool round_output, float* out,
                  std::vector<uint8_t>& scratch, int num_threads) {
  small_linear(w, RowsIn{x}, m, act, round_output, out, scratch, num_threads);
}

namespace {
// Rows per chunk of the fused feed-forward: its [32, up.n] activations (192 KiB for MiniLM's 1,536) stay in L2 with
// both layers' weights (1.2 MiB). MiniLM's int8 block on 4,000 rows (model-167 Xeon, best of 40 in one process):
// 4.53 ms in chunks of 32 rows, 4.75 of 64, 4.92 of 128, 5.09 of 16; 6.52 as two layer calls. On the AVX2 kernels
// (7-bit up, asymmetric down, under FASTEMBED_RT_ISA=avx2, best of 30): 26.5 ms in chunks of 32 or 64 rows, 26.8 of
// 120, 49.8 as two layer calls; 1,000 rows 6.6 / 6.6 / 8.5 against 7.6 ms.
constexpr int64_t kFeedForwardChunk = 32;

// Whether both layers of a feed-forward block take chunks of rows through both (int8 on AMX tiles, or on the AVX2
// kernels: there the block on 4,000 rows otherwise wrote and re-read 25 MB of float32 activations).
bool fused_feed_forward(const PackedLinear& up, const PackedLinear& down) {
  const bool avx2 = up.kind == WeightKind::kInt8 && down.kind == WeightKind::kInt8 && up.isa == Isa::kAvx2 &&
                    down.isa == Isa::kAvx2;
  return (int8_on_tiles(up) && int8_on_tiles(down)) || avx2;
}
}  // namespace

void small_feed_forward(const PackedLinear& up, const PackedLinear& down, const RowsIn& x, int64_t m, Activation act,
                        float* out, int num_threads) {
  if (!(fused_feed_forward(up, down) && m >= num_threads * kFeedForwardChunk)) {
    const std::unique_ptr<float[]> hidden(new float[static_cast<size_t>(m) * up.n]);  // not zeroed: all written
    std::vector<uint8_t> scratch;
    small_linear(up, x, m, act, false, hidden.get(), scratch, num_threads);
    small_linear(down, RowsIn{hidden.get()}, m, Activation::kNone, false, out, scratch, num_threads);
    return;
  }
  for_each_row_chunk(m, kFeedForwardChunk, num_threads, [&](int64_t r0, int64_t rows, std::vector<uint8_t>& scratch) {
    thread_local std::vector<float> hidden;  // the chunk's up-projection outputs, kept like the scratch
    hidden.resize(static_cast<size_t>(kFeedForwardChunk) * up.n);
    int8_chunk(up, rows_from(x, r0, up.k), rows, act, hidden.data(), scratch);
    int8_chunk(down, RowsIn{hidden.data()}, rows, Activation::kNone, out + r0 * down.n, scratch);
  });
}

void pooled_linear(const PackedLinear& w, const float* x, const int32_t* cu_seqlens, int64_t num_seqs,
                   TermPooling pooling, TermActivation activation, float* out, std::vector<uint8_t>& scratch,
                   int num_threads) {
  const int log1p_times = activation == TermActivation::kRelu ? 1 : 2;
  // max from 0: relu's floor
  reduce_rows(w, RowsIn{x}, cu_seqlens, num_seqs, pooling == TermPooling::kMax ? PanelOutput::kMax : PanelOutput::kSum,
              log1p_times, 0.0f, out, scratch, num_threads);
  if (pooling == TermPooling::kMax) {  // log1p is increasing: the log1p of relu's max is the max of the log1ps
    parallel_for(num_seqs, threads_for(static_cast<double>(num_seqs) * w.n, num_threads), [&](int64_t begin, int64_t end) {
      for (float* v = out + begin * w.n; v < out + end * w.n; ++v) {
        for (int t = 0; t < log1p_times; ++t) *v = std::log1p(*v);
      }
    });
  }
}

void max_linear(const PackedLinear& w, const RowsIn& x, const int32_t* cu_seqlens, int64_t num_seqs, float* out,
                std::vector<uint8_t>& scratch, int num_threads) {
  reduce_rows(w, x, cu_seqlens, num_seqs, PanelOutput::kMax, 0, -std::numeric_limits<float>::infinity(), out, scratch,
              num_threads);
}

}  // namespace fastembed_rt::cpu
