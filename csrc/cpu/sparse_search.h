// Exact search over sparse vectors (learned lexical weights): an inverted index in CSR form, one posting list
// per term, and top-k by dot product accumulated term by term.
#pragma once

#include <cstdint>

namespace fastembed_rt::cpu {

// Documents [num_docs] given as CSR rows (doc_indptr [num_docs + 1], terms, weights) → postings per term:
// term_offsets [num_terms + 1], doc_ids and weights, each posting list in increasing doc id. The caller checks
// that every term is in [0, num_terms) and doc_indptr rises from 0.
void build_postings(const int64_t* doc_indptr, const int32_t* terms, const float* weights, int64_t num_docs,
                    int64_t num_terms, int64_t* term_offsets, int32_t* doc_ids, float* posting_weights);

struct PostingsView {
  const int64_t* term_offsets;  // [num_terms + 1]
  const int32_t* doc_ids;
  const float* weights;
  int64_t num_terms, num_docs;
};

// For each query (CSR rows over the same terms; terms outside [0, num_terms) are the caller's to refuse), the k
// highest dot products over every document, ties to the lower id; documents sharing no term score 0 and take
// part like any other. out_scores / out_ids [num_queries, k], k <= num_docs. Memory: num_docs floats per worker.
void sparse_topk(const PostingsView& index, const int64_t* query_indptr, const int32_t* query_terms,
                 const float* query_weights, int64_t num_queries, int64_t k, float* out_scores, int64_t* out_ids,
                 int num_threads);

}  // namespace fastembed_rt::cpu
