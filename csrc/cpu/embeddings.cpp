#include "embeddings.h"

#include "parallel.h"

namespace fastembed_rt::cpu {
namespace {

template <typename T>
struct EmbedArgs {
  const T *word, *position, *token_type;
  int64_t hidden;
  const int64_t* ids;
  const int32_t* cu_seqlens;
  int64_t position_offset;
  T* out;
};

template <typename T>
FE_INLINE void embed_sequences(const EmbedArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t h = a.hidden;
  for (int64_t s = begin; s < end; ++s) {
    for (int64_t t = a.cu_seqlens[s]; t < a.cu_seqlens[s + 1]; ++t) {
      const T* word = a.word + a.ids[t] * h;
      const T* position = a.position + (t - a.cu_seqlens[s] + a.position_offset) * h;
      T* row = a.out + t * h;
      if (a.token_type) {
        for (int64_t j = 0; j < h; ++j) row[j] = from_float<T>(to_float(word[j]) + to_float(position[j]) + to_float(a.token_type[j]));
      } else {
        for (int64_t j = 0; j < h; ++j) row[j] = from_float<T>(to_float(word[j]) + to_float(position[j]));
      }
    }
  }
}

FE_ISA_DISPATCH(void, embed_chunk, (const EmbedArgs<float>& a, int64_t b, int64_t e), (a, b, e), embed_sequences(a, b, e))
FE_ISA_DISPATCH(void, embed_chunk, (const EmbedArgs<bf16>& a, int64_t b, int64_t e), (a, b, e), embed_sequences(a, b, e))

}  // namespace

template <typename T>
void embed_tokens(const T* word, const T* position, const T* token_type, int64_t hidden, const int64_t* ids,
                  const int32_t* cu_seqlens, int64_t num_seqs, int64_t position_offset, T* out, int num_threads) {
  const EmbedArgs<T> args{word, position, token_type, hidden, ids, cu_seqlens, position_offset, out};
  const double work = num_seqs ? static_cast<double>(cu_seqlens[num_seqs]) * hidden * 3 : 0.0;
  parallel_for(num_seqs, threads_for(work, num_threads), [&](int64_t b, int64_t e) { embed_chunk(args, b, e); });
}

template void embed_tokens<float>(const float*, const float*, const float*, int64_t, const int64_t*, const int32_t*,
                                  int64_t, int64_t, float*, int);
template void embed_tokens<bf16>(const bf16*, const bf16*, const bf16*, int64_t, const int64_t*, const int32_t*,
                                 int64_t, int64_t, bf16*, int);

}  // namespace fastembed_rt::cpu
