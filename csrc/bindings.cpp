// The one adapter between Python and the C++ kernels: it checks every shape, dtype and offset,
// releases the GIL, and hands the kernels raw pointers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <thread>

#include "cpu/ceilings.h"
#include "cpu/cpu_features.h"
#include "cpu/pooling.h"
#include "cpu/similarity.h"

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

int resolve_threads(int num_threads) {
  if (num_threads > 0) return num_threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

py::array_t<float> pool_packed(const py::array& hidden, const py::array& cu_seqlens, int mode, bool normalize,
                               const py::object& skip, int num_threads) {
  require_array<float>(hidden, "hidden", 2);
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
  const auto* hidden_ptr = static_cast<const float*>(hidden.data());
  const auto* cu_ptr = static_cast<const int32_t*>(cu_seqlens.data());
  float* out_ptr = out.mutable_data();
  const int threads = resolve_threads(num_threads);
  {
    py::gil_scoped_release release;
    cpu::pool_packed(hidden_ptr, hidden_size, hidden_size, cu_ptr, num_seqs, skip_ptr,
                     static_cast<cpu::PoolMode>(mode), normalize, out_ptr, hidden_size, threads);
  }
  return out;
}

cpu::Isa parse_isa(const std::string& name) {
  if (name == "auto") return cpu::best_isa();
  for (cpu::Isa isa : {cpu::Isa::kScalar, cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (name == cpu::isa_name(isa)) {
      if (!cpu::isa_supported(isa)) throw py::value_error("isa '" + name + "' is not supported by this CPU");
      return isa;
    }
  }
  throw py::value_error("unknown isa '" + name + "'; expected auto, scalar, avx2 or avx512");
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
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512_vnni"] = f.avx512_vnni;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_vpopcntdq"] = f.avx512_vpopcntdq;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastembed_rt C++ CPU kernels";
  m.def("pool_packed", &pool_packed, py::arg("hidden"), py::arg("cu_seqlens"), py::arg("mode"),
        py::arg("normalize") = false, py::arg("skip") = py::none(), py::arg("num_threads") = 0,
        "Pool packed float32 hidden states [total_tokens, hidden] into [num_seqs, hidden].");
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
      "similarity_isas",
      [] {
        std::vector<std::string> names;
        for (cpu::Isa isa : cpu::supported_isas()) names.emplace_back(cpu::isa_name(isa));
        return names;
      },
      "Instruction sets the similarity kernels can use on this CPU, best first.");
  m.def(
      "compute_ceilings",
      [](int num_threads, double seconds) {
        if (!cpu::isa_supported(cpu::Isa::kAvx512)) {
          throw py::value_error("compute ceilings are measured with AVX-512 (F, BW, VNNI, VPOPCNTDQ), which this CPU lacks");
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
        d["int8_macs_per_s"] = c.int8_macs_per_s;
        d["fp32_fmas_per_s"] = c.fp32_fmas_per_s;
        d["hamming_bits_per_s"] = c.hamming_bits_per_s;
        return d;
      },
      py::arg("num_threads") = 0, py::arg("seconds") = 0.3,
      "Peak int8 multiply-adds/s (VNNI), float32 FMAs/s and Hamming bits/s (xor+popcount+add) on all threads.");
  m.def("cpu_features", &cpu_features, "Instruction-set extensions detected at run time (cpuid + xgetbv).");
}
