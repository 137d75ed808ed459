// Term-at-a-time accumulation into a dense score array per worker (postings are read in doc order, so the
// writes stream), then one pass over it that keeps the top k: a block of 64 scores is looked at one by one
// only when its maximum beats the current k-th best, which after the first blocks is rare.
#include "sparse_search.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel.h"

namespace fastembed_rt::cpu {

void build_postings(const int64_t* doc_indptr, const int32_t* terms, const float* weights, int64_t num_docs,
                    int64_t num_terms, int64_t* term_offsets, int32_t* doc_ids, float* posting_weights) {
  const int64_t nnz = doc_indptr[num_docs];
  std::fill(term_offsets, term_offsets + num_terms + 1, 0);
  for (int64_t i = 0; i < nnz; ++i) ++term_offsets[terms[i] + 1];
  for (int64_t t = 0; t < num_terms; ++t) term_offsets[t + 1] += term_offsets[t];
  std::vector<int64_t> next(term_offsets, term_offsets + num_terms);
  for (int64_t d = 0; d < num_docs; ++d) {  // documents in order: each posting list comes out sorted by id
    for (int64_t i = doc_indptr[d]; i < doc_indptr[d + 1]; ++i) {
      const int64_t at = next[terms[i]]++;
      doc_ids[at] = static_cast<int32_t>(d);
      posting_weights[at] = weights[i];
    }
  }
}

namespace {

constexpr int64_t kScanBlock = 64;

struct Hit {
  float score;
  int64_t id;
};

// Better: higher score, then lower id.
bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

// The k best of scores [n] into out (best first). A min-heap of the k best so far; scanning ids upward, a later
// id enters only with a strictly higher score than the worst kept, which keeps ties to the lower id.
void top_k(const float* scores, int64_t n, int64_t k, std::vector<Hit>& heap, float* out_scores, int64_t* out_ids) {
  heap.clear();
  auto worse_on_top = [](const Hit& a, const Hit& b) { return better(a, b); };
  int64_t d = 0;
  for (; d < n && static_cast<int64_t>(heap.size()) < k; ++d) {
    heap.push_back({scores[d], d});
    std::push_heap(heap.begin(), heap.end(), worse_on_top);
  }
  for (; d < n; d += kScanBlock) {
    const int64_t end = std::min(n, d + kScanBlock);
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = d; j < end; ++j) block_max = std::max(block_max, scores[j]);
    if (!(block_max > heap.front().score)) continue;
    for (int64_t j = d; j < end; ++j) {
      if (scores[j] > heap.front().score) {
        std::pop_heap(heap.begin(), heap.end(), worse_on_top);
        heap.back() = {scores[j], j};
        std::push_heap(heap.begin(), heap.end(), worse_on_top);
      }
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (int64_t i = 0; i < static_cast<int64_t>(heap.size()); ++i) {
    out_scores[i] = heap[i].score;
    out_ids[i] = heap[i].id;
  }
}

}  // namespace

void sparse_topk(const PostingsView& index, const int64_t* query_indptr, const int32_t* query_terms,
                 const float* query_weights, int64_t num_queries, int64_t k, float* out_scores, int64_t* out_ids,
                 int num_threads) {
  const int64_t n = index.num_docs;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, num_queries)));
  parallel_for(num_queries, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(n, 0.0f);
    std::vector<Hit> heap;
    heap.reserve(k);
    for (int64_t q = begin; q < end; ++q) {
      for (int64_t i = query_indptr[q]; i < query_indptr[q + 1]; ++i) {
        const int32_t term = query_terms[i];
        const float w = query_weights[i];
        const int64_t a = index.term_offsets[term], b = index.term_offsets[term + 1];
        const int32_t* ids = index.doc_ids + a;
        const float* weights = index.weights + a;
        for (int64_t j = 0; j < b - a; ++j) scores[ids[j]] += w * weights[j];
      }
      top_k(scores.data(), n, k, heap, out_scores + q * k, out_ids + q * k);
      std::memset(scores.data(), 0, sizeof(float) * n);
    }
  });
}

}  // namespace fastembed_rt::cpu
