// Term-at-a-time accumulation into a dense score array per worker, a block of documents at a time (postings are
// read in doc order, so the writes stream, and the block's scores stay in cache), then one pass over the block
// that keeps the top k: 64 scores are looked at one by one only when their maximum beats the current k-th best,
// which after the first few is rare.
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

std::vector<float> build_dense_columns(const PostingsView& index, int32_t* dense_slot) {
  int64_t count = 0;
  for (int64_t t = 0; t < index.num_terms; ++t) {
    const bool dense = dense_worthy(index.term_offsets[t + 1] - index.term_offsets[t], index.num_docs);
    dense_slot[t] = dense ? static_cast<int32_t>(count++) : -1;
  }
  std::vector<float> columns(count * index.num_docs, 0.0f);
  for (int64_t t = 0; t < index.num_terms; ++t) {
    if (dense_slot[t] < 0) continue;
    float* column = columns.data() + dense_slot[t] * index.num_docs;
    for (int64_t j = index.term_offsets[t]; j < index.term_offsets[t + 1]; ++j) column[index.doc_ids[j]] = index.weights[j];
  }
  return columns;
}

namespace {

constexpr int64_t kScanBlock = 64;
// Documents scored at a time: their 1 MB of scores stays in L2 while every query term's postings for them are
// added in, where one score array for all documents (4 MB at 1M) went out to memory and back for each of a
// query's frequent terms, whose postings cover most documents.
constexpr int64_t kDocBlock = 1 << 18;

struct Hit {
  float score;
  int64_t id;
};

// Better: higher score, then lower id.
bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

// Offers documents offset ... offset + n - 1 with scores [n] to `heap`, a min-heap of the k best so far, ids
// offered upward from 0 across calls: while it holds fewer than k, every one enters; then a later id enters only
// with a strictly higher score than the worst kept, which keeps ties to the lower id.
void offer(const float* scores, int64_t n, int64_t offset, int64_t k, std::vector<Hit>& heap) {
  auto worse_on_top = [](const Hit& a, const Hit& b) { return better(a, b); };
  int64_t d = 0;
  for (; d < n && static_cast<int64_t>(heap.size()) < k; ++d) {
    heap.push_back({scores[d], offset + d});
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
        heap.back() = {scores[j], offset + j};
        std::push_heap(heap.begin(), heap.end(), worse_on_top);
      }
    }
  }
}

// The heap's hits into out, best first.
void take(std::vector<Hit>& heap, float* out_scores, int64_t* out_ids) {
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
    std::vector<float> scores(std::min(n, kDocBlock), 0.0f);
    std::vector<int64_t> cursor;  // per query term: its next posting
    std::vector<Hit> heap;
    heap.reserve(k);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t t0 = query_indptr[q], t1 = query_indptr[q + 1];
      cursor.resize(t1 - t0);
      for (int64_t i = t0; i < t1; ++i) cursor[i - t0] = index.term_offsets[query_terms[i]];
      heap.clear();
      for (int64_t d0 = 0; d0 < n; d0 += kDocBlock) {
        const int64_t d1 = std::min(n, d0 + kDocBlock);
        for (int64_t i = t0; i < t1; ++i) {  // each term's postings below d1, in the query's order of terms
          const float w = query_weights[i];
          const int32_t slot = index.dense_slot ? index.dense_slot[query_terms[i]] : -1;
          if (slot >= 0) {  // + w x 0 where the term is absent: the same sums as its postings give
            const float* column = index.dense + slot * n + d0;
            for (int64_t j = 0; j < d1 - d0; ++j) scores[j] += w * column[j];
            continue;
          }
          const int32_t* ids = index.doc_ids;
          const int64_t stop = std::lower_bound(ids + cursor[i - t0], ids + index.term_offsets[query_terms[i] + 1],
                                                static_cast<int32_t>(d1)) - ids;
          for (int64_t j = cursor[i - t0]; j < stop; ++j) scores[ids[j] - d0] += w * index.weights[j];
          cursor[i - t0] = stop;
        }
        offer(scores.data(), d1 - d0, d0, k, heap);
        std::memset(scores.data(), 0, sizeof(float) * (d1 - d0));
      }
      take(heap, out_scores + q * k, out_ids + q * k);
    }
  });
}

}  // namespace fastembed_rt::cpu
