#include "similarity.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "cpu_features.h"
#include "parallel.h"
#include "vector_math.h"
#include "similarity_kernels.h"

namespace fastembed_rt::cpu {
namespace {

// Rows scored per call of a score block: about kBlockBytes of corpus, which stays in L2 while every tile of queries
// passes over it, and 256 to 1,024 rows (their scores for ~100 queries stay in L2 too). 1M x 384 int8, 100
// queries, AVX2 EPYC: 355-360 ms in blocks of 1,024 rows against 368-385 of 256; float32 at 1,024 rows (1.5 MB,
// past L2) took 655-674 against 612-727 ms.
constexpr int64_t kBlockBytes = 384 << 10;
int64_t block_rows(int64_t row_bytes) { return std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(row_bytes, 1), 256, 1024); }
// Fewer rows than this per thread are not worth a thread.
constexpr int64_t kMinRowsPerThread = 4096;

template <typename Score>
struct Candidate {
  Score score;
  int64_t id;
};

// Higher score first; equal scores go to the lower corpus index.
template <typename Score>
bool better(const Candidate<Score>& a, const Candidate<Score>& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// The k best candidates seen so far, as a heap whose top is the worst of them.
template <typename Score>
class TopK {
 public:
  explicit TopK(int64_t k) : k_(k) { heap_.reserve(k); }

  void push(Score score, int64_t id) {
    const Candidate<Score> c{score, id};
    if (static_cast<int64_t>(heap_.size()) < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), better<Score>);
    } else if (better(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better<Score>);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), better<Score>);
    }
  }

  // Scores at or below this cannot enter (a cheap pre-check before push).
  Score floor() const {
    return static_cast<int64_t>(heap_.size()) < k_ ? std::numeric_limits<Score>::lowest() : heap_.front().score;
  }

  const std::vector<Candidate<Score>>& items() const { return heap_; }

 private:
  int64_t k_;
  std::vector<Candidate<Score>> heap_;
};

// The best value a block offers, so that a block with nothing good enough skips the heap entirely
// (after the first blocks almost all do). Plain min/max loops that the compiler vectorizes, cloned per
// ISA and picked by active_isa(), since they scan every score once.
// A float block holding a NaN or inf score (x - x is not 0) offers +inf: it is scanned, and the scan reports it.
template <typename Score>
Score block_best_impl(const Score* s, int64_t rows, bool negate) {
  Score lo = s[0], hi = s[0];
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r) {
    lo = s[r] < lo ? s[r] : lo;
    hi = s[r] > hi ? s[r] : hi;
    if constexpr (std::is_floating_point_v<Score>) finite &= s[r] - s[r] == 0;
  }
  if constexpr (std::is_floating_point_v<Score>) {
    if (!finite) return std::numeric_limits<Score>::infinity();
  }
  return negate ? -lo : hi;
}

FE_ISA_DISPATCH(int32_t, block_best, (const int32_t* s, int64_t rows, bool negate), (s, rows, negate),
                block_best_impl(s, rows, negate))
FE_ISA_DISPATCH(float, block_best, (const float* s, int64_t rows, bool negate), (s, rows, negate),
                block_best_impl(s, rows, negate))

// Scans the corpus a block at a time, each worker taking the next block when it finishes one (on a shared
// machine one core often runs slower, and fixed slices waited for it) into top-k lists of its own, then merges
// the workers' lists. `negate` turns distances (smaller is better) into scores for the heaps and back on output.
// A NaN or inf float score (a vector holding one, or products past float32's range) is an error naming one
// such pair: it has no place in a ranking, and a NaN would never enter a heap.
template <typename T, typename Score, typename ScoreBlock>
void search(const T* queries, int64_t nq, const T* corpus, int64_t n, int64_t dim, int64_t k, ScoreBlock score_block,
            bool negate, int num_threads, Score* out_scores, int64_t* out_ids) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, n / kMinRowsPerThread));
  std::vector<std::vector<TopK<Score>>> tops(threads, std::vector<TopK<Score>>(nq, TopK<Score>(k)));
  std::vector<std::vector<Score>> scores(threads);
  std::vector<std::pair<int64_t, int64_t>> not_finite(threads, {-1, -1});  // per worker: (query, row) of one
  const int64_t block_size = block_rows(dim * static_cast<int64_t>(sizeof(T)));
  parallel_for_each((n + block_size - 1) / block_size, static_cast<int>(threads), [&](int worker, int64_t block) {
    auto& mine = tops[worker];
    std::vector<Score>& block_scores = scores[worker];
    block_scores.resize(nq * block_size);
    const int64_t start = block * block_size, rows = std::min(block_size, n - start);
    score_block(queries, nq, corpus + start * dim, rows, dim, block_scores.data());
    for (int64_t i = 0; i < nq; ++i) {
      const Score* s = block_scores.data() + i * rows;
      Score floor = mine[i].floor();
      if (block_best(s, rows, negate) < floor) continue;
      for (int64_t r = 0; r < rows; ++r) {
        const Score value = negate ? -s[r] : s[r];
        if (!(value - value == 0)) {
          not_finite[worker] = {i, start + r};
          continue;
        }
        if (value >= floor) {
          mine[i].push(value, start + r);
          floor = mine[i].floor();
        }
      }
    }
  });
  for (const auto& [query, row] : not_finite) {
    if (query >= 0) {
      throw std::invalid_argument("query " + std::to_string(query) + " against corpus row " + std::to_string(row) +
                                  ": the score is NaN or inf (a vector holds NaN or inf, or the products overflow float32)");
    }
  }
  std::vector<Candidate<Score>> merged;
  for (int64_t i = 0; i < nq; ++i) {
    merged.clear();
    for (const auto& per_thread : tops) merged.insert(merged.end(), per_thread[i].items().begin(), per_thread[i].items().end());
    if (static_cast<int64_t>(merged.size()) < k) throw std::logic_error("top-k search: fewer candidates than k");
    std::partial_sort(merged.begin(), merged.begin() + k, merged.end(), better<Score>);
    for (int64_t j = 0; j < k; ++j) {
      out_scores[i * k + j] = negate ? -merged[j].score : merged[j].score;
      out_ids[i * k + j] = merged[j].id;
    }
  }
}

}  // namespace

void topk_dot_f32(const float* queries, int64_t nq, const float* corpus, int64_t n, int64_t dim, int64_t k, Isa isa,
                  int num_threads, float* out_scores, int64_t* out_ids) {
  auto block = isa == Isa::kAvx512 ? kernels::dot_f32_avx512 : isa == Isa::kAvx2 ? kernels::dot_f32_avx2 : kernels::dot_f32_scalar;
  search(queries, nq, corpus, n, dim, k, block, false, num_threads, out_scores, out_ids);
}

void topk_dot_i8(const int8_t* queries, int64_t nq, const int8_t* corpus, int64_t n, int64_t dim, int64_t k, Isa isa,
                 int num_threads, int32_t* out_scores, int64_t* out_ids) {
  isa = with_extension(isa, cpu_features().avx512_vnni);  // the AVX-512 int8 block is VNNI
  auto block = isa == Isa::kAvx512 ? kernels::dot_i8_avx512 : isa == Isa::kAvx2 ? kernels::dot_i8_avx2 : kernels::dot_i8_scalar;
  search(queries, nq, corpus, n, dim, k, block, false, num_threads, out_scores, out_ids);
}

void topk_hamming(const uint8_t* queries, int64_t nq, const uint8_t* corpus, int64_t n, int64_t nbytes, int64_t k,
                  Isa isa, int num_threads, int32_t* out_distances, int64_t* out_ids) {
  isa = with_extension(isa, cpu_features().avx512_vpopcntdq);
  auto block = isa == Isa::kAvx512 ? kernels::hamming_avx512 : isa == Isa::kAvx2 ? kernels::hamming_avx2 : kernels::hamming_scalar;
  search(queries, nq, corpus, n, nbytes, k, block, true, num_threads, out_distances, out_ids);
}

}  // namespace fastembed_rt::cpu
