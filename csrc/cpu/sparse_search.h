// Exact search over sparse vectors (learned lexical weights): an inverted index in CSR form, one posting list
// per term, and top-k by dot product accumulated term by term.
#pragma once

#include <cstdint>
#include <vector>

namespace fastembed_rt::cpu {

// Documents [num_docs] given as CSR rows (doc_indptr [num_docs + 1], terms, weights) → postings per term:
// term_offsets [num_terms + 1], doc_ids and weights, each posting list in increasing doc id. The caller checks
// that every term is in [0, num_terms) and doc_indptr rises from 0.
void build_postings(const int64_t* doc_indptr, const int32_t* terms, const float* weights, int64_t num_docs,
                    int64_t num_terms, int64_t* term_offsets, int32_t* doc_ids, float* posting_weights);

// Posting lists in increasing doc id, no id twice in a list (the caller checks). Terms in at least half the
// documents may also come as dense columns (dense_slot[term] >= 0: dense [slot * num_docs + doc], 0 where absent),
// which the search adds with a vector loop instead of a scatter per posting, at half the bytes.
struct PostingsView {
  const int64_t* term_offsets;  // [num_terms + 1]
  const int32_t* doc_ids;
  const float* weights;
  int64_t num_terms, num_docs;
  const int32_t* dense_slot = nullptr;  // [num_terms], or nullptr: no dense columns
  const float* dense = nullptr;
};

// Whether a term of `postings` postings among num_docs documents is worth a dense column.
inline bool dense_worthy(int64_t postings, int64_t num_docs) { return num_docs > 0 && 2 * postings >= num_docs; }

// The dense columns of the terms dense_worthy picks, in term order, [count * num_docs]; dense_slot [num_terms]
// gets each term's column (-1: none).
std::vector<float> build_dense_columns(const PostingsView& index, int32_t* dense_slot);

// For each query (CSR rows over the same terms; terms outside [0, num_terms) are the caller's to refuse), the k
// highest dot products over every document, ties to the lower id; documents sharing no term score 0 and take
// part like any other. out_scores / out_ids [num_queries, k], k <= num_docs. Memory: up to 2^18 floats per worker.
void sparse_topk(const PostingsView& index, const int64_t* query_indptr, const int32_t* query_terms,
                 const float* query_weights, int64_t num_queries, int64_t k, float* out_scores, int64_t* out_ids,
                 int num_threads);

}  // namespace fastembed_rt::cpu
