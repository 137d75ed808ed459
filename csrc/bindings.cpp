// The one adapter between Python and the C++ kernels: it checks every shape, dtype and offset,
// releases the GIL, and hands the kernels raw pointers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <memory>
#include <map>
#include <string>
#include <utility>
#include <vector>
#include <thread>

#include "cpu/activations.h"
#include "cpu/amx.h"
#include "cpu/attention.h"
#include "cpu/ceilings.h"
#include "cpu/cpu_features.h"
#include "cpu/isa.h"
#include "cpu/embeddings.h"
#include "cpu/fused_encoder.h"
#include "cpu/int8_linear.h"
#include "cpu/norms.h"
#include "cpu/pooling.h"
#include "cpu/similarity.h"
#include "cpu/sparse_search.h"

namespace py = pybind11;
namespace cpu = fastembed_rt::cpu;

namespace {

template <typename T>
void require_array(const py::array& a, const char* name, py::ssize_t ndim) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": expected dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
                         ", got " + py::str(a.dtype()).cast<std::string>());
  }
  if (a.ndim() != ndim) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) + " dimensions, got " +
                          std::to_string(a.ndim()));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  }
}

void check_cu_seqlens(const py::array& cu_seqlens, py::ssize_t total_tokens) {
  require_array<int32_t>(cu_seqlens, "cu_seqlens", 1);
  const py::ssize_t n = cu_seqlens.shape(0);
  if (n < 1) throw py::value_error("cu_seqlens: must hold at least one offset (0)");
  const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
  if (cu[0] != 0) throw py::value_error("cu_seqlens[0] must be 0, got " + std::to_string(cu[0]));
  for (py::ssize_t i = 1; i < n; ++i) {
    if (cu[i] < cu[i - 1]) {
      throw py::value_error("cu_seqlens must be non-decreasing: cu_seqlens[" + std::to_string(i) +
                            "]=" + std::to_string(cu[i]) + " < " + std::to_string(cu[i - 1]));
    }
  }
  if (cu[n - 1] != total_tokens) {
    throw py::value_error("cu_seqlens[-1]=" + std::to_string(cu[n - 1]) + " does not match total_tokens=" +
                          std::to_string(total_tokens));
  }
}

// key_lengths (None, or int32 [num_seqs]) for the sequences of a checked cu_seqlens: each sequence's keys are
// its first key_lengths[s] tokens, at least one and at most all of them (none for an empty sequence).
const int32_t* checked_key_lengths(const py::object& key_lengths, const py::array& cu_seqlens, py::array& keep) {
  if (key_lengths.is_none()) return nullptr;
  keep = key_lengths.cast<py::array>();
  require_array<int32_t>(keep, "key_lengths", 1);
  const py::ssize_t num_seqs = cu_seqlens.shape(0) - 1;
  if (keep.shape(0) != num_seqs) {
    throw py::value_error("key_lengths: expected one count per sequence (" + std::to_string(num_seqs) + "), got " +
                          std::to_string(keep.shape(0)));
  }
  const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
  const auto* kl = static_cast<const int32_t*>(keep.data());
  for (py::ssize_t s = 0; s < num_seqs; ++s) {
    const int32_t len = cu[s + 1] - cu[s];
    if (kl[s] > len || kl[s] < (len > 0 ? 1 : 0)) {
      throw py::value_error("key_lengths[" + std::to_string(s) + "]=" + std::to_string(kl[s]) + " must lie in [1, " +
                            std::to_string(len) + "], the sequence's length");
    }
  }
  return kl;
}

int resolve_threads(int num_threads) {
  if (num_threads > 0) return num_threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

// The packed layers' scratch (x's codes for an int8 layer: ~6 MB for 4,096 rows of 384), one per calling thread
// and kept between calls: a fresh buffer was zero-filled and page-faulted in on every call. Past kKeptScratch
// it is freed after the call, so that one huge batch does not hold its memory for good.
class Scratch {
 public:
  Scratch() : buffer_(buffer()) {}
  ~Scratch() {
    if (buffer_.capacity() > kKeptScratch) std::vector<uint8_t>().swap(buffer_);
  }
  std::vector<uint8_t>& get() { return buffer_; }

 private:
  static constexpr size_t kKeptScratch = 64u << 20;
  static std::vector<uint8_t>& buffer() {
    thread_local std::vector<uint8_t> kept;
    return kept;
  }
  std::vector<uint8_t>& buffer_;
};

// Transformer kernels take float32 arrays, or bfloat16 passed as its raw int16 bits (numpy has no bfloat16).
enum class Storage { kFloat32, kBFloat16 };

Storage storage_of(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<float>())) return Storage::kFloat32;
  if (a.dtype().is(py::dtype::of<int16_t>())) return Storage::kBFloat16;
  throw py::type_error(std::string(name) + ": expected float32, or bfloat16 bits as int16; got " +
                       py::str(a.dtype()).cast<std::string>());
}

void require_like(const py::array& a, const py::array& like, const char* name, const char* like_name) {
  if (!a.dtype().is(like.dtype())) {
    throw py::type_error(std::string(name) + ": dtype " + py::str(a.dtype()).cast<std::string>() + " differs from " +
                         like_name + "'s " + py::str(like.dtype()).cast<std::string>());
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": must be C-contiguous");
  bool same = a.ndim() == like.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == like.shape(i);
  if (!same) throw py::value_error(std::string(name) + ": shape differs from " + like_name + "'s");
}

// A 1-d contiguous vector of `length` values with `like`'s dtype, or nullptr when `v` is None.
const void* optional_vector(const py::object& v, const py::array& like, py::ssize_t length, const char* name) {
  if (v.is_none()) return nullptr;
  const auto a = v.cast<py::array>();
  if (!a.dtype().is(like.dtype())) throw py::type_error(std::string(name) + ": dtype differs from the input's");
  if (a.ndim() != 1 || a.shape(0) != length || !(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": expected a contiguous vector of " + std::to_string(length) + " values");
  }
  return a.data();
}

// `out` if given (same shape and dtype as `like`, may alias it), else a fresh array.
py::array output_like(const py::object& out, const py::array& like) {
  if (out.is_none()) return py::array(like.dtype(), std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
  auto a = out.cast<py::array>();
  require_like(a, like, "out", "x");
  if (!a.writeable()) throw py::value_error("out: must be writeable");
  return a;
}

// `a` as require_array wants it, of `storage`'s element type (bfloat16 as its int16 bits).
void require_stored(const py::array& a, Storage storage, const char* name, py::ssize_t ndim) {
  if (storage == Storage::kBFloat16) {
    require_array<int16_t>(a, name, ndim);
  } else {
    require_array<float>(a, name, ndim);
  }
}

template <typename Fn>
void with_storage(Storage storage, Fn fn) {
  if (storage == Storage::kFloat32) {
    fn(float{});
  } else {
    fn(cpu::bf16{});
  }
}

py::array_t<float> pool_packed(const py::array& hidden, const py::array& cu_seqlens, int mode, bool normalize,
                               const py::object& skip, int num_threads) {
  // bfloat16 is read in place and pooled in float32
  const Storage storage = storage_of(hidden, "hidden");
  require_stored(hidden, storage, "hidden", 2);
  check_cu_seqlens(cu_seqlens, hidden.shape(0));
  if (mode < 0 || mode > static_cast<int>(cpu::PoolMode::kLastToken)) {
    throw py::value_error("pool mode must be in [0, 5], got " + std::to_string(mode));
  }
  const py::ssize_t num_seqs = cu_seqlens.shape(0) - 1;
  const py::ssize_t hidden_size = hidden.shape(1);
  const int32_t* skip_ptr = nullptr;
  py::array skip_array;
  if (!skip.is_none()) {
    skip_array = skip.cast<py::array>();
    require_array<int32_t>(skip_array, "skip", 1);
    if (skip_array.shape(0) != num_seqs) {
      throw py::value_error("skip: expected " + std::to_string(num_seqs) + " entries, got " +
                            std::to_string(skip_array.shape(0)));
    }
    skip_ptr = static_cast<const int32_t*>(skip_array.data());
    for (py::ssize_t i = 0; i < num_seqs; ++i) {
      if (skip_ptr[i] < 0) throw py::value_error("skip[" + std::to_string(i) + "] is negative");
    }
  }
  py::array_t<float> out({num_seqs, hidden_size});
  const auto* cu_ptr = static_cast<const int32_t*>(cu_seqlens.data());
  float* out_ptr = out.mutable_data();
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    cpu::pool_packed(static_cast<const T*>(hidden.data()), hidden_size, hidden_size, cu_ptr, num_seqs, skip_ptr,
                     static_cast<cpu::PoolMode>(mode), normalize, out_ptr, hidden_size, threads);
  });
  return out;
}

py::object norm_rows(const py::array& x, const py::object& residual, const py::array& weight, const py::object& bias,
                     double eps, int kind, bool return_sum, const py::object& out, int num_threads) {
  const Storage storage = storage_of(x, "x");
  if (x.ndim() != 2 || !(x.flags() & py::array::c_style)) throw py::value_error("x: expected a C-contiguous 2-d array");
  if (kind != 0 && kind != 1) throw py::value_error("norm kind must be 0 (LayerNorm) or 1 (RMSNorm)");
  if (!(eps >= 0.0)) throw py::value_error("eps must be >= 0");
  const py::ssize_t rows = x.shape(0), cols = x.shape(1);
  if (cols < 1) throw py::value_error("x: rows must have at least one value");
  py::array residual_array;
  if (!residual.is_none()) {
    residual_array = residual.cast<py::array>();
    require_like(residual_array, x, "residual", "x");
  }
  const void* w = optional_vector(weight, x, cols, "weight");
  const void* b = optional_vector(bias, x, cols, "bias");
  py::array result = output_like(out, x);
  py::array sum = return_sum ? output_like(py::none(), x) : py::array();
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    const T* res = residual.is_none() ? nullptr : static_cast<const T*>(residual_array.data());
    T* sum_ptr = return_sum ? static_cast<T*>(sum.mutable_data()) : nullptr;
    py::gil_scoped_release release;
    cpu::norm_rows<T>(static_cast<const T*>(x.data()), res, static_cast<const T*>(w), static_cast<const T*>(b),
                      static_cast<T*>(result.mutable_data()), sum_ptr, rows, cols, static_cast<float>(eps),
                      static_cast<cpu::NormKind>(kind), threads);
  });
  if (return_sum) return py::make_tuple(result, sum);
  return result;
}

cpu::Activation parse_activation(int act) {
  if (act < 0 || act > static_cast<int>(cpu::Activation::kGeluTanh)) {
    throw py::value_error("activation must be 0 (none), 1 (gelu erf) or 2 (gelu tanh), got " + std::to_string(act));
  }
  return static_cast<cpu::Activation>(act);
}

py::array bias_activation(const py::array& x, const py::object& bias, int act, const py::object& out, int num_threads) {
  const Storage storage = storage_of(x, "x");
  if (x.ndim() != 2 || !(x.flags() & py::array::c_style)) throw py::value_error("x: expected a C-contiguous 2-d array");
  const cpu::Activation activation = parse_activation(act);
  const py::ssize_t rows = x.shape(0), cols = x.shape(1);
  const void* b = optional_vector(bias, x, cols, "bias");
  py::array result = output_like(out, x);
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    cpu::bias_activation<T>(static_cast<const T*>(x.data()), static_cast<const T*>(b),
                            static_cast<T*>(result.mutable_data()), rows, cols, activation, threads);
  });
  return result;
}

// Returns the token stride (in elements) of a [T, heads, head_dim] view whose heads are contiguous.
int64_t packed_heads_stride(const py::array& a, const char* name) {
  if (a.ndim() != 3) throw py::value_error(std::string(name) + ": expected [tokens, heads, head_dim]");
  const py::ssize_t item = a.itemsize();
  if (a.shape(0) == 0) return a.shape(1) * a.shape(2);  // no tokens: strides are meaningless
  if ((a.shape(2) > 1 && a.strides(2) != item) || (a.shape(1) > 1 && a.strides(1) != a.shape(2) * item)) {
    throw py::value_error(std::string(name) + ": each token's heads must be contiguous [heads, head_dim]");
  }
  if (a.strides(0) % item != 0 || a.strides(0) < a.shape(1) * a.shape(2) * item) {
    throw py::value_error(std::string(name) + ": token stride must be a positive multiple of heads * head_dim");
  }
  return a.strides(0) / item;
}

const std::map<std::string, cpu::Bf16Products> BF16_PRODUCTS = {
    {"auto", cpu::Bf16Products::kCpuChoice}, {"amx", cpu::Bf16Products::kAmx},
    {"dot", cpu::Bf16Products::kDot}, {"widened", cpu::Bf16Products::kWidened}};

py::array attention_varlen(const py::array& q, const py::array& k, const py::array& v, const py::array& cu_seqlens,
                           double scale, bool causal, int num_threads, int64_t window_left, int64_t window_right,
                           const py::object& relative_bias, const py::object& key_lengths,
                           const std::string& bf16_products) {
  const Storage storage = storage_of(q, "q");
  const cpu::AttentionShape shape{
      cu_seqlens.ndim() == 1 ? cu_seqlens.shape(0) - 1 : 0, q.ndim() == 3 ? q.shape(1) : 0,
      k.ndim() == 3 ? k.shape(1) : 0, q.ndim() == 3 ? q.shape(2) : 0,
      packed_heads_stride(q, "q"), packed_heads_stride(k, "k"), packed_heads_stride(v, "v")};
  for (const auto& [a, name] : {std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    if (!a->dtype().is(q.dtype())) throw py::type_error(std::string(name) + ": dtype differs from q's");
    if (a->shape(0) != q.shape(0) || a->shape(2) != q.shape(2) || a->shape(1) != shape.num_kv_heads) {
      throw py::value_error(std::string(name) + ": expected [tokens, kv_heads, head_dim] matching q and k");
    }
  }
  if (shape.num_heads < 1 || shape.head_dim < 1) throw py::value_error("q: needs at least one head of at least one value");
  if (shape.num_kv_heads < 1 || shape.num_heads % shape.num_kv_heads != 0) {
    throw py::value_error("kv heads (" + std::to_string(shape.num_kv_heads) + ") must divide query heads (" +
                          std::to_string(shape.num_heads) + ")");
  }
  check_cu_seqlens(cu_seqlens, q.shape(0));
  if (!std::isfinite(scale)) throw py::value_error("scale must be finite");
  const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
  cpu::AttentionExtras extras;
  if (window_left < -1 || window_right < -1) throw py::value_error("window sizes must be >= 0, or -1 for no limit");
  extras.window_left = window_left;
  extras.window_right = window_right;
  py::array bias;  // kept alive until the kernel has run
  if (!relative_bias.is_none()) {
    bias = relative_bias.cast<py::array>();
    require_array<float>(bias, "relative_bias", 2);
    int64_t longest = 0;
    for (int64_t s = 0; s < shape.num_seqs; ++s) longest = std::max<int64_t>(longest, cu[s + 1] - cu[s]);
    if (bias.shape(0) != shape.num_heads || bias.shape(1) % 2 != 1 || bias.shape(1) / 2 < longest - 1) {
      throw py::value_error("relative_bias: expected [heads=" + std::to_string(shape.num_heads) +
                            ", 2R+1] with R >= the longest sequence - 1 (" + std::to_string(longest - 1) + ")");
    }
    extras.relative_bias = static_cast<const float*>(bias.data());
    extras.bias_radius = bias.shape(1) / 2;
  }
  py::array key_counts;
  extras.key_lengths = checked_key_lengths(key_lengths, cu_seqlens, key_counts);
  const auto kernel = BF16_PRODUCTS.find(bf16_products);
  if (kernel == BF16_PRODUCTS.end()) {
    throw py::value_error("bf16_products must be 'auto', 'amx', 'dot' or 'widened', got '" + bf16_products + "'");
  }
  extras.bf16_products = kernel->second;
  if (kernel->second == cpu::Bf16Products::kAmx || kernel->second == cpu::Bf16Products::kDot) {
    if (storage != Storage::kBFloat16 || !cpu::bf16_kernel_applies(kernel->second, shape, extras)) {
      throw py::value_error("bf16_products='" + bf16_products + "' needs bfloat16 q, k, v, " +
                            (kernel->second == cpu::Bf16Products::kAmx ? "AMX tiles (AMX-BF16) at the active ISA, a head size that is a multiple of 32"
                                                                        : "AVX512_BF16 at the active ISA, an even head size") +
                            " and no window, relative bias or key lengths");
    }
  }
  py::array out(q.dtype(), {q.shape(0), q.shape(1), q.shape(2)});
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    cpu::attention_varlen<T>(static_cast<const T*>(q.data()), static_cast<const T*>(k.data()),
                             static_cast<const T*>(v.data()), static_cast<T*>(out.mutable_data()), cu, shape,
                             static_cast<float>(scale), causal, threads, extras);
  });
  return out;
}

py::tuple quantize_rows(const py::array& x, int num_threads, bool asymmetric) {
  const Storage storage = storage_of(x, "x");
  if (x.ndim() != 2 || !(x.flags() & py::array::c_style)) throw py::value_error("x: expected a C-contiguous 2-d array");
  const py::ssize_t rows = x.shape(0), cols = x.shape(1);
  py::array_t<int8_t> q({rows, cols});
  py::array_t<float> scales(rows);
  int8_t* qp = q.mutable_data();
  float* sp = scales.mutable_data();
  std::vector<int32_t> zeros(asymmetric ? rows : 0);  // the panel kernels' business: not returned
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    cpu::quantize_rows<T>(static_cast<const T*>(x.data()), rows, cols, qp, sp, asymmetric ? zeros.data() : nullptr, threads);
  });
  return py::make_tuple(q, scales);
}

// Checks ids [tokens] against a vocabulary and every sequence of cu_seqlens against `positions` rows.
void check_ids_and_lengths(const py::array& ids, const py::array& cu_seqlens, int64_t vocab, int64_t positions) {
  require_array<int64_t>(ids, "ids", 1);
  check_cu_seqlens(cu_seqlens, ids.shape(0));
  const auto* id = static_cast<const int64_t*>(ids.data());
  for (py::ssize_t i = 0; i < ids.shape(0); ++i) {
    if (id[i] < 0 || id[i] >= vocab) {
      throw py::value_error("ids[" + std::to_string(i) + "]=" + std::to_string(id[i]) + " is outside the vocabulary of " +
                            std::to_string(vocab));
    }
  }
  const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
  for (py::ssize_t s = 0; s + 1 < cu_seqlens.shape(0); ++s) {
    if (cu[s + 1] - cu[s] > positions) {
      throw py::value_error("sequence " + std::to_string(s) + " has " + std::to_string(cu[s + 1] - cu[s]) +
                            " tokens; the model has " + std::to_string(positions) + " positions");
    }
  }
}

py::array embed_tokens(const py::array& word, const py::array& position, const py::object& token_type,
                       const py::array& ids, const py::array& cu_seqlens, int64_t position_offset, int num_threads) {
  const Storage storage = storage_of(word, "word");
  if (word.ndim() != 2 || !(word.flags() & py::array::c_style)) throw py::value_error("word: expected a C-contiguous table");
  if (position.ndim() != 2 || position.shape(1) != word.shape(1) || !(position.flags() & py::array::c_style)) {
    throw py::value_error("position: expected a C-contiguous [positions, hidden] table");
  }
  if (!position.dtype().is(word.dtype())) throw py::type_error("position: dtype differs from word's");
  if (position_offset < 0 || position_offset > position.shape(0)) throw py::value_error("position_offset out of range");
  const int64_t hidden = word.shape(1);
  const void* type_row = optional_vector(token_type, word, hidden, "token_type");
  check_ids_and_lengths(ids, cu_seqlens, word.shape(0), position.shape(0) - position_offset);
  py::array out(word.dtype(), {ids.shape(0), static_cast<py::ssize_t>(hidden)});
  const auto* id = static_cast<const int64_t*>(ids.data());
  const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
  const int64_t num_seqs = cu_seqlens.shape(0) - 1;
  const int threads = resolve_threads(num_threads);
  with_storage(storage, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release release;
    cpu::embed_tokens<T>(static_cast<const T*>(word.data()), static_cast<const T*>(position.data()),
                         static_cast<const T*>(type_row), hidden, id, cu, num_seqs, position_offset,
                         static_cast<T*>(out.mutable_data()), threads);
  });
  return out;
}

// Checks an int32 GEMM result [rows, cols] and its scales and bias; returns the bias pointer (or nullptr).
const float* check_dequantize(const py::array& acc, const py::array& row_scales, const py::array& col_scales,
                              const py::object& bias) {
  require_array<int32_t>(acc, "acc", 2);
  require_array<float>(row_scales, "row_scales", 1);
  require_array<float>(col_scales, "col_scales", 1);
  if (row_scales.shape(0) != acc.shape(0)) throw py::value_error("row_scales: expected one scale per row of acc");
  if (col_scales.shape(0) != acc.shape(1)) throw py::value_error("col_scales: expected one scale per column of acc");
  return static_cast<const float*>(optional_vector(bias, col_scales, acc.shape(1), "bias"));
}

py::array_t<float> dequantize_rows(const py::array& acc, const py::array& row_scales, const py::array& col_scales,
                                   const py::object& bias, int act, int num_threads) {
  const float* b = check_dequantize(acc, row_scales, col_scales, bias);
  const cpu::Activation activation = parse_activation(act);
  const py::ssize_t rows = acc.shape(0), cols = acc.shape(1);
  py::array_t<float> out({rows, cols});
  const auto* ap = static_cast<const int32_t*>(acc.data());
  const auto* rs = static_cast<const float*>(row_scales.data());
  const auto* cs = static_cast<const float*>(col_scales.data());
  float* op = out.mutable_data();
  const int threads = resolve_threads(num_threads);
  {
    py::gil_scoped_release release;
    cpu::dequantize_rows(ap, rows, cols, rs, cs, b, activation, op, threads);
  }
  return out;
}

py::tuple requantize_rows(const py::array& acc, const py::array& row_scales, const py::array& col_scales,
                          const py::object& bias, int act, int num_threads, bool asymmetric) {
  const float* b = check_dequantize(acc, row_scales, col_scales, bias);
  const cpu::Activation activation = parse_activation(act);
  const py::ssize_t rows = acc.shape(0), cols = acc.shape(1);
  py::array_t<int8_t> codes({rows, cols});
  py::array_t<float> scales(rows);
  const auto* ap = static_cast<const int32_t*>(acc.data());
  const auto* rs = static_cast<const float*>(row_scales.data());
  const auto* cs = static_cast<const float*>(col_scales.data());
  int8_t* cp = codes.mutable_data();
  float* sp = scales.mutable_data();
  std::vector<int32_t> zeros(asymmetric ? rows : 0);
  const int threads = resolve_threads(num_threads);
  {
    py::gil_scoped_release release;
    cpu::requantize_rows(ap, rows, cols, rs, cs, b, activation, cp, sp, asymmetric ? zeros.data() : nullptr, threads);
  }
  return py::make_tuple(codes, scales);
}

// A linear layer given as (weight [n, k]: float32, bfloat16 bits as int16, or int8 codes; scales [n] for int8
// or None; bias [n] float32 or None), checked and packed for small_gemm.
cpu::PackedLinear pack_checked_linear(const py::tuple& spec, int64_t n, int64_t k, const char* name,
                                      bool asymmetric_input = false) {
  if (spec.size() != 3) throw py::value_error(std::string(name) + ": expected (weight, scales, bias)");
  const auto weight = spec[0].cast<py::array>();
  cpu::WeightKind kind;
  if (weight.dtype().is(py::dtype::of<float>())) {
    kind = cpu::WeightKind::kFloat32;
  } else if (weight.dtype().is(py::dtype::of<int16_t>())) {
    kind = cpu::WeightKind::kBFloat16;
  } else if (weight.dtype().is(py::dtype::of<int8_t>())) {
    kind = cpu::WeightKind::kInt8;
  } else {
    throw py::type_error(std::string(name) + ": weight must be float32, bfloat16 bits (int16) or int8");
  }
  if (weight.ndim() != 2 || weight.shape(0) != n || weight.shape(1) != k || !(weight.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": expected a contiguous [" + std::to_string(n) + ", " +
                          std::to_string(k) + "] weight");
  }
  if (n < 1 || k < 1) throw py::value_error(std::string(name) + ": empty weight");
  if (!cpu::small_gemm_supported(kind)) {
    throw py::value_error(std::string(name) + ": packed linear layers need AVX2 or better; the active ISA is " +
                          cpu::isa_name(cpu::active_isa()));
  }
  const float* scales = nullptr;
  py::array scales_array;
  if (kind == cpu::WeightKind::kInt8) {
    if (spec[1].is_none()) throw py::value_error(std::string(name) + ": int8 weights need their scales");
    scales_array = spec[1].cast<py::array>();
    require_array<float>(scales_array, "scales", 1);
    if (scales_array.shape(0) != n) throw py::value_error(std::string(name) + ": expected one scale per output");
    scales = static_cast<const float*>(scales_array.data());
  }
  const float* bias = nullptr;
  py::array bias_array;
  if (!spec[2].is_none()) {
    bias_array = spec[2].cast<py::array>();
    require_array<float>(bias_array, "bias", 1);
    if (bias_array.shape(0) != n) throw py::value_error(std::string(name) + ": expected one bias per output");
    bias = static_cast<const float*>(bias_array.data());
  }
  return cpu::pack_linear(kind, weight.data(), n, k, scales, bias, asymmetric_input);
}

// A linear layer packed once for small_gemm's kernels, called on float32 rows: the op path's bfloat16 and int8
// layers where no library runs them fast, and the fused encoder's layers (the same object, shared).
class PackedLinear {
 public:
  explicit PackedLinear(const py::tuple& spec, bool asymmetric_input) {
    const auto weight = spec.size() == 3 ? spec[0].cast<py::array>() : py::array();
    if (weight.ndim() != 2) throw py::value_error("weight: expected [out, in]");
    packed_ = std::make_shared<const cpu::PackedLinear>(
        pack_checked_linear(spec, weight.shape(0), weight.shape(1), "linear", asymmetric_input));
  }

  // x: float32 rows, or (int8 layers) bfloat16 rows as their bits (int16), quantized as they are.
  py::array_t<float> call(const py::array& x, int activation, bool round_output, int num_threads) const {
    const cpu::RowsIn rows = input_rows(x);
    const cpu::Activation act = parse_activation(activation);
    py::array_t<float> out({x.shape(0), static_cast<py::ssize_t>(packed_->n)});
    float* op = out.mutable_data();
    const int threads = resolve_threads(num_threads);
    {
      py::gil_scoped_release release;
      Scratch scratch;
      cpu::small_linear(*packed_, rows, x.shape(0), act, round_output, op, scratch.get(), threads);
    }
    return out;
  }

  // down(act(this(x))) with x as for call(): a feed-forward block, fused where both layers run int8 on AMX tiles
  // (cpu::small_feed_forward).
  py::array_t<float> feed_forward(const PackedLinear& down, const py::array& x, int activation, int num_threads) const {
    if (down.packed_->k != packed_->n) {
      throw py::value_error("down: expected " + std::to_string(packed_->n) + " inputs (this layer's outputs), got " +
                            std::to_string(down.packed_->k));
    }
    const cpu::RowsIn rows = input_rows(x);
    const cpu::Activation act = parse_activation(activation);
    py::array_t<float> out({x.shape(0), static_cast<py::ssize_t>(down.packed_->n)});
    float* op = out.mutable_data();
    const int threads = resolve_threads(num_threads);
    {
      py::gil_scoped_release release;
      cpu::small_feed_forward(*packed_, *down.packed_, rows, x.shape(0), act, op, threads);
    }
    return out;
  }

  // out [sequences, out]: per sequence of cu_seqlens, SPLADE's pooling of activation(x . W^T + bias) over its
  // rows, reduced in the kernels' epilogue (cpu::pooled_linear).
  py::array_t<float> pooled(const py::array& x, const py::array& cu_seqlens, int pooling, int activation,
                            int num_threads) const {
    require_array<float>(x, "x", 2);
    if (pooling != 0 && pooling != 1) throw py::value_error("pooling must be 0 (max) or 1 (sum), got " + std::to_string(pooling));
    if (activation != 0 && activation != 1) {
      throw py::value_error("activation must be 0 (relu) or 1 (log1p_relu), got " + std::to_string(activation));
    }
    const auto* xp = static_cast<const float*>(x.data());
    return per_sequence(x, cu_seqlens, num_threads, [&](const int32_t* cu, int64_t num_seqs, float* out,
                                                        std::vector<uint8_t>& scratch, int threads) {
      cpu::pooled_linear(*packed_, xp, cu, num_seqs, static_cast<cpu::TermPooling>(pooling),
                         static_cast<cpu::TermActivation>(activation), out, scratch, threads);
    });
  }

  // out [sequences, out]: per sequence of cu_seqlens, the largest x . W^T + bias over its rows (cpu::max_linear).
  // x: float32 rows, (a float32 or bfloat16 layer) bfloat16 rows as their int16 bits, or (an int8 layer) int8
  // codes with their per-row scales.
  py::array_t<float> max_pooled(const py::array& x, const py::array& cu_seqlens, const py::object& scales,
                                int num_threads) const {
    cpu::RowsIn rows;
    if (scales.is_none() && x.dtype().is(py::dtype::of<int16_t>())) {
      if (packed_->kind == cpu::WeightKind::kInt8) throw py::value_error("x as bfloat16 rows needs a float layer");
      require_array<int16_t>(x, "x", 2);
      rows.bf16 = static_cast<const uint16_t*>(x.data());
    } else if (scales.is_none()) {
      require_array<float>(x, "x", 2);
      rows.floats = static_cast<const float*>(x.data());
    } else {
      if (packed_->kind != cpu::WeightKind::kInt8) throw py::value_error("x as int8 codes needs an int8 layer");
      if (packed_->asymmetric_input) {
        throw py::value_error("x as int8 codes: this layer quantizes its input asymmetrically; give float32 rows");
      }
      require_array<int8_t>(x, "x codes", 2);
      const auto s = scales.cast<py::array>();
      require_array<float>(s, "scales", 1);
      if (s.shape(0) != x.shape(0)) throw py::value_error("scales: expected one per row of x");
      const auto* sp = static_cast<const float*>(s.data());
      for (py::ssize_t i = 0; i < s.shape(0); ++i) {
        if (!std::isfinite(sp[i])) throw py::value_error("scales[" + std::to_string(i) + "] is not finite");
      }
      rows.codes = static_cast<const int8_t*>(x.data());
      rows.scales = sp;
    }
    return per_sequence(x, cu_seqlens, num_threads, [&](const int32_t* cu, int64_t num_seqs, float* out,
                                                        std::vector<uint8_t>& scratch, int threads) {
      cpu::max_linear(*packed_, rows, cu, num_seqs, out, scratch, threads);
    });
  }

  // The weight [out, in] as it was given: float32, bfloat16 bits (int16) or int8 codes.
  py::array unpack() const {
    const cpu::PackedLinear& p = *packed_;
    py::array weight(p.kind == cpu::WeightKind::kFloat32    ? py::dtype::of<float>()
                     : p.kind == cpu::WeightKind::kBFloat16 ? py::dtype::of<int16_t>()
                                                            : py::dtype::of<int8_t>(),
                     {static_cast<py::ssize_t>(p.n), static_cast<py::ssize_t>(p.k)});
    cpu::unpack_linear(p, weight.mutable_data());
    return weight;
  }

  // A bfloat16 layer packed for AVX2 as float32 [in, out]: the transposed weight, for a float32 GEMM.
  py::array_t<float> widened(int num_threads) const {
    const cpu::PackedLinear& p = *packed_;
    if (p.kind != cpu::WeightKind::kBFloat16 || p.isa != cpu::Isa::kAvx2) {
      throw py::value_error("widened: only bfloat16 layers packed for AVX2 (no native bfloat16) widen; this one is for " +
                            isa());
    }
    py::array_t<float> out({static_cast<py::ssize_t>(p.k), static_cast<py::ssize_t>(p.n)});
    float* op = out.mutable_data();
    const int threads = resolve_threads(num_threads);
    {
      py::gil_scoped_release release;
      cpu::widen_bfloat16(p, op, threads);
    }
    return out;
  }

  std::string isa() const { return cpu::isa_name(packed_->isa); }
  bool asymmetric_input() const { return packed_->asymmetric_input; }
  int64_t nbytes() const { return cpu::packed_bytes(*packed_); }
  const std::shared_ptr<const cpu::PackedLinear>& shared() const { return packed_; }

 private:
  // out [sequences, n] from reduce(cu, num_seqs, out, scratch, threads), run without the GIL, once x's columns
  // and cu_seqlens are checked against the layer and x's rows (x's dtype is the caller's to check).
  template <typename Reduce>
  py::array_t<float> per_sequence(const py::array& x, const py::array& cu_seqlens, int num_threads, Reduce reduce) const {
    if (x.shape(1) != packed_->k) throw py::value_error("x: expected " + std::to_string(packed_->k) + " columns");
    check_cu_seqlens(cu_seqlens, x.shape(0));
    const py::ssize_t num_seqs = cu_seqlens.shape(0) - 1;
    py::array_t<float> out({num_seqs, static_cast<py::ssize_t>(packed_->n)});
    const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
    float* op = out.mutable_data();
    const int threads = resolve_threads(num_threads);
    {
      py::gil_scoped_release release;
      Scratch scratch;
      reduce(cu, num_seqs, op, scratch.get(), threads);
    }
    return out;
  }

  // x [m, k] checked: float32 rows, or bfloat16 rows as int16 bits for an int8 layer.
  cpu::RowsIn input_rows(const py::array& x) const {
    const bool bf16_rows = packed_->kind == cpu::WeightKind::kInt8 && py::dtype::of<int16_t>().is(x.dtype());
    if (bf16_rows) {
      require_array<int16_t>(x, "x", 2);
    } else {
      require_array<float>(x, "x", 2);
    }
    if (x.shape(1) != packed_->k) throw py::value_error("x: expected " + std::to_string(packed_->k) + " columns");
    cpu::RowsIn rows;
    if (bf16_rows) {
      rows.bf16 = static_cast<const uint16_t*>(x.data());
    } else {
      rows.floats = static_cast<const float*>(x.data());
    }
    return rows;
  }

  std::shared_ptr<const cpu::PackedLinear> packed_;
};

// The fused small-batch encoder, holding references to the embedding tables it reads in place.
class FusedEncoder {
 public:
  FusedEncoder(const py::array& word, const py::array& position, const py::object& token_type,
               const py::array& norm_weight, const py::array& norm_bias, int64_t heads, double eps, int activation,
               int64_t position_offset)
      : word_(word), position_(position) {
    const Storage storage = storage_of(word, "word_embeddings");
    const bool bfloat16 = storage == Storage::kBFloat16;
    require_stored(word, storage, "word_embeddings", 2);
    require_stored(position, storage, "position_embeddings", 2);
    hidden_ = word.shape(1);
    if (position.shape(1) != hidden_) throw py::value_error("position_embeddings: width differs from word_embeddings'");
    if (heads < 1 || hidden_ % heads != 0) throw py::value_error("heads must divide the hidden size");
    if (position_offset < 0 || position_offset >= position.shape(0)) throw py::value_error("position_offset out of range");
    cpu::EncoderEmbeddings e{};
    e.bfloat16 = bfloat16;
    e.word = word.data();
    e.position = position.data();
    if (!token_type.is_none()) {
      token_type_ = token_type.cast<py::array>();
      e.token_type = optional_vector(token_type_, word, hidden_, "token_type");
    }
    e.norm_weight = vector_of(norm_weight, hidden_, "embedding norm weight");
    e.norm_bias = vector_of(norm_bias, hidden_, "embedding norm bias");
    e.position_offset = position_offset;
    vocab_ = word.shape(0);
    max_positions_ = position.shape(0) - position_offset;
    encoder_ = std::make_unique<cpu::FusedEncoder>(hidden_, heads, static_cast<float>(eps), parse_activation(activation),
                                                   std::move(e));
  }

  void add_layer(const PackedLinear& qkv, const PackedLinear& out, const py::array& attn_norm_weight,
                 const py::array& attn_norm_bias, const PackedLinear& up, const PackedLinear& down,
                 const py::array& ffn_norm_weight, const py::array& ffn_norm_bias, const PackedLinear* value) {
    cpu::FusedEncoderLayer layer;
    layer.qkv = checked(qkv, (value ? 2 : 3) * hidden_, hidden_, value ? "qkv (queries and keys)" : "qkv");
    if (value) {
      layer.value = checked(*value, hidden_, hidden_, "value");
      if (layer.value->kind != cpu::WeightKind::kFloat32) throw py::value_error("value: expected float32 weights");
    }
    layer.out = checked(out, hidden_, hidden_, "out");
    layer.up = checked(up, up.shared()->n, hidden_, "up");
    layer.down = checked(down, hidden_, up.shared()->n, "down");
    layer.attn_norm_weight = vector_of(attn_norm_weight, hidden_, "attention norm weight");
    layer.attn_norm_bias = vector_of(attn_norm_bias, hidden_, "attention norm bias");
    layer.ffn_norm_weight = vector_of(ffn_norm_weight, hidden_, "ffn norm weight");
    layer.ffn_norm_bias = vector_of(ffn_norm_bias, hidden_, "ffn norm bias");
    encoder_->add_layer(std::move(layer));
  }

  py::array_t<float> forward(const py::array& ids, const py::array& cu_seqlens, int num_threads,
                             const py::object& key_lengths) {
    check_ids_and_lengths(ids, cu_seqlens, vocab_, max_positions_);
    py::array key_counts;
    const int32_t* kl = checked_key_lengths(key_lengths, cu_seqlens, key_counts);
    const auto* id = static_cast<const int64_t*>(ids.data());
    const auto* cu = static_cast<const int32_t*>(cu_seqlens.data());
    const int64_t num_seqs = cu_seqlens.shape(0) - 1;
    py::array_t<float> out({ids.shape(0), static_cast<py::ssize_t>(hidden_)});
    float* o = out.mutable_data();
    {
      py::gil_scoped_release release;
      encoder_->forward(id, cu, num_seqs, o, resolve_threads(num_threads), kl);
    }
    return out;
  }

 private:
  static std::shared_ptr<const cpu::PackedLinear> checked(const PackedLinear& linear, int64_t n, int64_t k, const char* name) {
    const auto& p = linear.shared();
    if (p->n != n || p->k != k) {
      throw py::value_error(std::string(name) + ": expected a [" + std::to_string(n) + ", " + std::to_string(k) +
                            "] layer, got [" + std::to_string(p->n) + ", " + std::to_string(p->k) + "]");
    }
    return p;
  }

  static std::vector<float> vector_of(const py::array& a, int64_t n, const char* name) {
    require_array<float>(a, name, 1);
    if (a.shape(0) != n) throw py::value_error(std::string(name) + ": expected " + std::to_string(n) + " values");
    const auto* p = static_cast<const float*>(a.data());
    return std::vector<float>(p, p + n);
  }

  py::array word_, position_, token_type_;
  int64_t hidden_ = 0, vocab_ = 0, max_positions_ = 0;
  std::unique_ptr<cpu::FusedEncoder> encoder_;
};

// "auto" is the active ISA; a named one must be known and run on this CPU.
cpu::Isa parse_isa(const std::string& name) {
  if (name == "auto") return cpu::active_isa();
  cpu::Isa isa;
  if (!cpu::parse_isa_name(name.c_str(), &isa)) {
    throw py::value_error("unknown isa '" + name + "'; expected auto, scalar, avx2 or avx512");
  }
  if (!cpu::isa_supported(isa)) throw py::value_error("isa '" + name + "' is not supported by this CPU");
  return isa;
}

// Checks queries [nq, d] and corpus [n, d] of dtype T, and k; returns the k actually served (<= n).
template <typename T>
int64_t check_search(const py::array& queries, const py::array& corpus, int64_t k) {
  require_array<T>(queries, "queries", 2);
  require_array<T>(corpus, "corpus", 2);
  if (queries.shape(1) != corpus.shape(1)) {
    throw py::value_error("dimension mismatch: queries have " + std::to_string(queries.shape(1)) +
                          " columns, corpus has " + std::to_string(corpus.shape(1)));
  }
  if (corpus.shape(1) < 1) throw py::value_error("vectors must have at least one dimension");
  if (corpus.shape(0) < 1) throw py::value_error("corpus is empty");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  return std::min<int64_t>(k, corpus.shape(0));
}

template <typename T, typename Score, typename Fn>
py::tuple run_search(const py::array& queries, const py::array& corpus, int64_t k, const std::string& isa_name,
                     int num_threads, Fn fn) {
  const int64_t served = check_search<T>(queries, corpus, k);
  const cpu::Isa isa = parse_isa(isa_name);
  const int64_t nq = queries.shape(0), n = corpus.shape(0), dim = corpus.shape(1);
  py::array_t<Score> scores({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(served)});
  py::array_t<int64_t> ids({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(served)});
  const auto* q = static_cast<const T*>(queries.data());
  const auto* c = static_cast<const T*>(corpus.data());
  Score* s = scores.mutable_data();
  int64_t* i = ids.mutable_data();
  const int threads = resolve_threads(num_threads);
  if (nq > 0) {
    py::gil_scoped_release release;
    fn(q, nq, c, n, dim, served, isa, threads, s, i);
  }
  return py::make_tuple(scores, ids);
}

py::dict cpu_features() {
  const auto& f = cpu::cpu_features();
  py::dict d;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["bmi2"] = f.bmi2;
  d["f16c"] = f.f16c;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512cd"] = f.avx512cd;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  d["avx512_vnni"] = f.avx512_vnni;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_vpopcntdq"] = f.avx512_vpopcntdq;
  d["amx_bf16"] = f.amx_bf16;
  d["amx_int8"] = f.amx_int8;
  d["amd"] = f.amd;
  return d;
}

// CSR rows (indptr int64 [n + 1] rising from 0 to the entry count, terms int32 in [0, num_terms), weights
// float32), checked; `what` names them in errors.
void check_sparse_rows(const py::array& indptr, const py::array& terms, const py::array& weights, int64_t num_terms,
                       const std::string& what) {
  require_array<int64_t>(indptr, (what + " indptr").c_str(), 1);
  require_array<int32_t>(terms, (what + " indices").c_str(), 1);
  require_array<float>(weights, (what + " values").c_str(), 1);
  const auto* ip = static_cast<const int64_t*>(indptr.data());
  const py::ssize_t rows = indptr.shape(0) - 1;
  if (rows < 0 || ip[0] != 0) throw py::value_error(what + ": indptr must start at 0");
  for (py::ssize_t i = 0; i < rows; ++i) {
    if (ip[i + 1] < ip[i]) throw py::value_error(what + ": indptr decreases at row " + std::to_string(i));
  }
  if (ip[rows] != terms.shape(0) || terms.shape(0) != weights.shape(0)) {
    throw py::value_error(what + ": indptr ends at " + std::to_string(ip[rows]) + " but there are " +
                          std::to_string(terms.shape(0)) + " indices and " + std::to_string(weights.shape(0)) + " values");
  }
  const auto* t = static_cast<const int32_t*>(terms.data());
  for (py::ssize_t i = 0; i < terms.shape(0); ++i) {
    if (t[i] < 0 || t[i] >= num_terms) {
      throw py::value_error(what + ": index " + std::to_string(t[i]) + " is outside the vocabulary [0, " +
                            std::to_string(num_terms) + ")");
    }
  }
}

// An inverted index (postings per term), checked once when made, then searched without copying; the terms in at
// least half the documents also as dense columns, made here (no more memory than those terms' postings take).
class SparsePostings {
 public:
  SparsePostings(py::array term_offsets, py::array doc_ids, py::array weights, int64_t num_docs)
      : term_offsets_(std::move(term_offsets)), doc_ids_(std::move(doc_ids)), weights_(std::move(weights)) {
    require_array<int64_t>(term_offsets_, "term_offsets", 1);
    require_array<int32_t>(doc_ids_, "doc_ids", 1);
    require_array<float>(weights_, "weights", 1);
    if (num_docs < 0 || num_docs > std::numeric_limits<int32_t>::max()) throw py::value_error("num_docs out of range");
    const auto* off = static_cast<const int64_t*>(term_offsets_.data());
    const int64_t terms = term_offsets_.shape(0) - 1;
    if (terms < 1 || off[0] != 0 || off[terms] != doc_ids_.shape(0) || doc_ids_.shape(0) != weights_.shape(0)) {
      throw py::value_error("postings: term_offsets must rise from 0 to the posting count, doc_ids and weights alike long");
    }
    for (int64_t t = 0; t < terms; ++t) {
      if (off[t + 1] < off[t]) throw py::value_error("postings: term_offsets decrease at term " + std::to_string(t));
    }
    const auto* ids = static_cast<const int32_t*>(doc_ids_.data());
    for (int64_t t = 0; t < terms; ++t) {  // the search walks each list in order, a block of documents at a time
      for (int64_t i = off[t]; i < off[t + 1]; ++i) {
        if (ids[i] < 0 || ids[i] >= num_docs) throw py::value_error("postings: doc id " + std::to_string(ids[i]) + " out of range");
        if (i > off[t] && ids[i] <= ids[i - 1]) {
          throw py::value_error("postings: the doc ids of term " + std::to_string(t) + " must increase, at posting " +
                                std::to_string(i));
        }
      }
    }
    const auto* w = static_cast<const float*>(weights_.data());
    for (py::ssize_t i = 0; i < weights_.shape(0); ++i) {  // 0 x inf would spread NaN to other queries' scores
      if (!std::isfinite(w[i])) throw py::value_error("postings: weight " + std::to_string(i) + " is not finite");
    }
    view_ = {off, ids, static_cast<const float*>(weights_.data()), terms, num_docs};
    dense_slot_.resize(terms);
    dense_ = cpu::build_dense_columns(view_, dense_slot_.data());
    view_.dense_slot = dense_slot_.data();
    view_.dense = dense_.data();
  }

  py::tuple search(const py::array& indptr, const py::array& terms, const py::array& weights, int64_t k, int num_threads) const {
    check_sparse_rows(indptr, terms, weights, view_.num_terms, "queries");
    if (k < 1 || k > view_.num_docs) throw py::value_error("k must be in [1, num_docs]");
    const py::ssize_t nq = indptr.shape(0) - 1;
    py::array_t<float> scores({nq, static_cast<py::ssize_t>(k)});
    py::array_t<int64_t> ids({nq, static_cast<py::ssize_t>(k)});
    const auto* ip = static_cast<const int64_t*>(indptr.data());
    const auto* tp = static_cast<const int32_t*>(terms.data());
    const auto* wp = static_cast<const float*>(weights.data());
    float* sp = scores.mutable_data();
    int64_t* op = ids.mutable_data();
    const int threads = resolve_threads(num_threads);
    {
      py::gil_scoped_release release;
      cpu::sparse_topk(view_, ip, tp, wp, nq, k, sp, op, threads);
    }
    return py::make_tuple(scores, ids);
  }

 private:
  py::array term_offsets_, doc_ids_, weights_;
  std::vector<int32_t> dense_slot_;
  std::vector<float> dense_;  // the frequent terms' dense columns (cpu::dense_worthy), derived in memory
  cpu::PostingsView view_{};
};

py::tuple sparse_postings(const py::array& indptr, const py::array& terms, const py::array& weights, int64_t num_terms) {
  if (num_terms < 1) throw py::value_error("num_terms must be positive");
  check_sparse_rows(indptr, terms, weights, num_terms, "documents");
  const int64_t docs = indptr.shape(0) - 1;
  if (docs > std::numeric_limits<int32_t>::max()) throw py::value_error("documents: more than 2^31 - 1 of them");
  py::array_t<int64_t> offsets(num_terms + 1);
  py::array_t<int32_t> doc_ids(terms.shape(0));
  py::array_t<float> posting_weights(terms.shape(0));
  const auto* ip = static_cast<const int64_t*>(indptr.data());
  const auto* tp = static_cast<const int32_t*>(terms.data());
  const auto* wp = static_cast<const float*>(weights.data());
  int64_t* op = offsets.mutable_data();
  int32_t* dp = doc_ids.mutable_data();
  float* pw = posting_weights.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::build_postings(ip, tp, wp, docs, num_terms, op, dp, pw);
  }
  return py::make_tuple(offsets, doc_ids, posting_weights);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastembed_rt C++ CPU kernels";
  m.def("pool_packed", &pool_packed, py::arg("hidden"), py::arg("cu_seqlens"), py::arg("mode"),
        py::arg("normalize") = false, py::arg("skip") = py::none(), py::arg("num_threads") = 0,
        "Pool packed hidden states [total_tokens, hidden] (float32, or bfloat16 bits as int16) into float32 "
        "[num_seqs, hidden].");
  m.def("sparse_postings", &sparse_postings, py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("num_terms"),
        "Documents as CSR rows -> (term_offsets int64 [num_terms + 1], doc_ids int32, weights float32): postings per "
        "term in increasing doc id.");
  py::class_<SparsePostings>(m, "SparsePostings", "An inverted index over sparse vectors, checked once, searched exactly.")
      .def(py::init<py::array, py::array, py::array, int64_t>(), py::arg("term_offsets"), py::arg("doc_ids"),
           py::arg("weights"), py::arg("num_docs"))
      .def("search", &SparsePostings::search, py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("k"),
           py::arg("num_threads") = 0,
           "Top-k dot products of CSR queries: (scores float32 [nq, k], ids int64 [nq, k]), ties to the lower id.");
  m.def(
      "topk_dot_f32",
      [](const py::array& q, const py::array& c, int64_t k, const std::string& isa, int threads) {
        return run_search<float, float>(q, c, k, isa, threads, cpu::topk_dot_f32);
      },
      py::arg("queries"), py::arg("corpus"), py::arg("k"), py::arg("isa") = "auto", py::arg("num_threads") = 0,
      "Top-k float32 inner products: (scores [nq, k] float32, ids [nq, k] int64), best first.");
  m.def(
      "topk_dot_i8",
      [](const py::array& q, const py::array& c, int64_t k, const std::string& isa, int threads) {
        return run_search<int8_t, int32_t>(q, c, k, isa, threads, cpu::topk_dot_i8);
      },
      py::arg("queries"), py::arg("corpus"), py::arg("k"), py::arg("isa") = "auto", py::arg("num_threads") = 0,
      "Top-k int8 inner products with int32 accumulation: (scores int32, ids int64), best first.");
  m.def(
      "topk_hamming",
      [](const py::array& q, const py::array& c, int64_t k, const std::string& isa, int threads) {
        return run_search<uint8_t, int32_t>(q, c, k, isa, threads, cpu::topk_hamming);
      },
      py::arg("queries"), py::arg("corpus"), py::arg("k"), py::arg("isa") = "auto", py::arg("num_threads") = 0,
      "Top-k smallest Hamming distances between packed uint8 codes: (distances int32, ids int64).");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> names;
        for (cpu::Isa isa : cpu::supported_isas()) names.emplace_back(cpu::isa_name(isa));
        return names;
      },
      "Instruction sets the kernels can use on this CPU, best first.");
  m.def(
      "active_isa", [] { return std::string(cpu::isa_name(cpu::active_isa())); },
      "The instruction set the kernels use now (FASTEMBED_RT_ISA or set_active_isa caps it).");
  m.def(
      "set_active_isa",
      [](const std::string& name) {
        cpu::set_active_isa(name == "auto" ? cpu::best_isa() : parse_isa(name));
      },
      py::arg("isa"), "Caps every kernel at `isa` (scalar, avx2, avx512; auto: the best this CPU runs).");
  m.def(
      "compute_ceilings",
      [](int num_threads, double seconds) {
        if (!cpu::ceilings_supported()) {
          throw py::value_error("compute ceilings are measured at AVX2 or better; the active ISA is " +
                                std::string(cpu::isa_name(cpu::active_isa())));
        }
        if (!(seconds > 0.0 && seconds <= 60.0)) throw py::value_error("seconds must be in (0, 60]");
        const int threads = resolve_threads(num_threads);
        cpu::Ceilings c{};
        {
          py::gil_scoped_release release;
          c = cpu::measure_ceilings(threads, seconds);
        }
        py::dict d;
        d["threads"] = threads;
        d["isa"] = cpu::isa_name(c.isa);
        d["int8_macs_per_s"] = c.int8_macs_per_s;
        d["int16_macs_per_s"] = c.int16_macs_per_s;
        d["fp32_fmas_per_s"] = c.fp32_fmas_per_s;
        d["hamming_bits_per_s"] = c.hamming_bits_per_s;
        return d;
      },
      py::arg("num_threads") = 0, py::arg("seconds") = 0.3,
      "Peak int8 and int16 multiply-adds/s, float32 FMAs/s and Hamming bits/s (xor + popcount + add) on all threads, "
      "with the instructions of the active ISA (ceilings.h says which).");
  m.def("norm_rows", &norm_rows, py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("bias"),
        py::arg("eps"), py::arg("kind"), py::arg("return_sum") = false, py::arg("out") = py::none(),
        py::arg("num_threads") = 0,
        "norm(x + residual) * weight + bias row by row (kind 0 LayerNorm, 1 RMSNorm); with return_sum, "
        "also x + residual. float32 or bfloat16 bits (int16); out may alias x.");
  m.def("bias_activation", &bias_activation, py::arg("x"), py::arg("bias"), py::arg("activation"),
        py::arg("out") = py::none(), py::arg("num_threads") = 0,
        "activation(x + bias) (0 none, 1 GELU erf, 2 GELU tanh); float32 or bfloat16 bits; out may alias x.");
  m.def("attention_varlen", &attention_varlen, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cu_seqlens"),
        py::arg("scale"), py::arg("causal") = false, py::arg("num_threads") = 0, py::arg("window_left") = -1,
        py::arg("window_right") = -1, py::arg("relative_bias") = py::none(), py::arg("key_lengths") = py::none(),
        py::arg("bf16_products") = "auto",
        "Softmax attention within each packed sequence: q [T, H, D], k/v [T, Hkv, D] -> [T, H, D]; optional sliding "
        "window (key j for query i if i - left <= j <= i + right; -1: no limit), relative position bias "
        "[H, 2R+1] (adds bias[h, R + j - i]) and key lengths int32 [B] (keys: each sequence's first tokens). "
        "bf16_products: 'auto' (this CPU's choice, bf16_attention_products()), 'amx' (AMX tiles), 'dot' "
        "(AVX512_BF16 dot products) or 'widened' (float32 arithmetic).");
  m.def("bf16_attention_products",
        [] {
          switch (cpu::bf16_cpu_choice()) {
            case cpu::Bf16Products::kAmx: return "amx";
            case cpu::Bf16Products::kDot: return "dot";
            default: return "widened";
          }
        },
        "How attention multiplies bfloat16 inputs on this CPU at the active ISA where its kernel applies: 'amx' "
        "(AMX tiles; head sizes that are multiples of 32), 'dot' (AVX512_BF16 dot products; even head sizes) or "
        "'widened' (to float32; every other case).");
  m.def("embed_tokens", &embed_tokens, py::arg("word"), py::arg("position"), py::arg("token_type"), py::arg("ids"),
        py::arg("cu_seqlens"), py::arg("position_offset") = 0, py::arg("num_threads") = 0,
        "word[ids] + position[offset + index in sequence] (+ token_type) per packed token; float32 or bfloat16 bits.");
  m.def("quantize_rows", &quantize_rows, py::arg("x"), py::arg("num_threads") = 0, py::arg("asymmetric") = false,
        "Per-row int8 quantization of float32 or bfloat16 bits [rows, cols]: (codes int8, scales float32 [rows]); "
        "symmetric, or asymmetric 7-bit codes given back without their zero points (x ~ codes * scale either way).");
  m.def("dequantize_rows", &dequantize_rows, py::arg("acc"), py::arg("row_scales"), py::arg("col_scales"),
        py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("num_threads") = 0,
        "activation(acc * row_scale * col_scale + bias) for an int32 GEMM result [rows, cols].");
  m.def("requantize_rows", &requantize_rows, py::arg("acc"), py::arg("row_scales"), py::arg("col_scales"),
        py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("num_threads") = 0, py::arg("asymmetric") = false,
        "dequantize_rows then quantize_rows in one pass: (codes int8, scales float32) for the next int8 GEMM.");
  py::class_<FusedEncoder>(m, "FusedEncoder",
                           "A post-LayerNorm encoder for a few tokens in one call (AVX2 or better; see small_gemm.h).")
      .def(py::init<const py::array&, const py::array&, const py::object&, const py::array&, const py::array&, int64_t,
                    double, int, int64_t>(),
           py::arg("word_embeddings"), py::arg("position_embeddings"), py::arg("token_type"), py::arg("norm_weight"),
           py::arg("norm_bias"), py::arg("heads"), py::arg("eps"), py::arg("activation"), py::arg("position_offset"))
      .def("add_layer", &FusedEncoder::add_layer, py::arg("qkv"), py::arg("out"), py::arg("attn_norm_weight"),
           py::arg("attn_norm_bias"), py::arg("up"), py::arg("down"), py::arg("ffn_norm_weight"),
           py::arg("ffn_norm_bias"), py::arg("value") = nullptr)
      .def("forward", &FusedEncoder::forward, py::arg("ids"), py::arg("cu_seqlens"), py::arg("num_threads") = 0,
           py::arg("key_lengths") = py::none(),
           "Hidden states [tokens, hidden] float32 of packed int64 ids; key_lengths as for attention_varlen.");
  py::class_<PackedLinear>(m, "PackedLinear",
                           "A linear layer (weight, scales, bias) packed for the panel kernels of small_gemm.h.")
      .def(py::init<const py::tuple&, bool>(), py::arg("linear"), py::arg("asymmetric_input") = false)
      .def("__call__", &PackedLinear::call, py::arg("x"), py::arg("activation") = 0, py::arg("round_output") = false,
           py::arg("num_threads") = 0,
           "act(x . W^T + bias) for float32 x [m, k] (an int8 layer: or bfloat16 x as int16 bits): float32 [m, n].")
      .def("feed_forward", &PackedLinear::feed_forward, py::arg("down"), py::arg("x"), py::arg("activation") = 0,
           py::arg("num_threads") = 0,
           "down(act(x . W^T + bias)) for x as __call__ takes it: a feed-forward block, its layers run fused where both "
           "are int8 on AMX tiles (the activations between them stay in cache); the same result as two calls.")
      .def("pooled", &PackedLinear::pooled, py::arg("x"), py::arg("cu_seqlens"), py::arg("pooling") = 0,
           py::arg("activation") = 0, py::arg("num_threads") = 0,
           "SPLADE pooling per sequence of activation(x @ W.T + bias): [sequences, out], never [rows, out]; pooling "
           "0 max / 1 sum, activation 0 relu (log1p(relu)) / 1 log1p_relu (log1p(log1p(relu))).")
      .def("max_pooled", &PackedLinear::max_pooled, py::arg("x"), py::arg("cu_seqlens"), py::arg("scales") = py::none(),
           py::arg("num_threads") = 0,
           "Per sequence, the largest x @ W.T + bias over its rows: [sequences, out]; -inf for an empty sequence. x: "
           "float32 rows, bfloat16 rows as int16 bits (a float32 or bfloat16 layer), or int8 codes with their per-row "
           "scales (an int8 layer).")
      .def("unpack", &PackedLinear::unpack, "The weight [out, in] as given: float32, bfloat16 bits (int16) or int8 codes.")
      .def("widened", &PackedLinear::widened, py::arg("num_threads") = 0,
           "A bfloat16 layer packed for AVX2 as float32 [in, out] (the transposed weight), for a float32 GEMM.")
      .def_property_readonly("isa", &PackedLinear::isa, "The kernel set it was packed for (avx512 or avx2).")
      .def_property_readonly("asymmetric_input", &PackedLinear::asymmetric_input,
                             "Whether its input is quantized to asymmetric 7-bit codes (int8 on AVX2; small_gemm.h).")
      .def_property_readonly("nbytes", &PackedLinear::nbytes, "The memory the packed layer holds.");
  m.def(
      "fused_encoder_supported",
      [](const std::string& kind) {
        if (kind == "float32") return cpu::small_gemm_supported(cpu::WeightKind::kFloat32);
        if (kind == "bfloat16") return cpu::small_gemm_supported(cpu::WeightKind::kBFloat16);
        if (kind == "int8") return cpu::small_gemm_supported(cpu::WeightKind::kInt8);
        throw py::value_error("kind must be float32, bfloat16 or int8");
      },
      py::arg("kind"), "Whether this CPU runs FusedEncoder linear layers with weights of this kind.");
  m.def("cpu_features", &cpu_features, "Instruction-set extensions detected at run time (cpuid + xgetbv).");
  m.def("amx_int8_ready", &cpu::kernels::amx_int8_ready,
        "Whether int8 linear layers run on AMX tiles here: the CPU has AMX-INT8, the OS lets this process use the "
        "tiles, the active ISA is avx512 and set_amx_allowed has not forbidden them.");
  m.def("set_amx_allowed", &cpu::kernels::set_amx_allowed, py::arg("allowed"),
        "Allows or forbids every AMX kernel (bfloat16 attention, int8 linear layers) for the process; the kernels "
        "they replace run instead. Returns the previous setting.");
}
