// Portable score blocks: the fallback on any CPU, and the plainest statement of what each kernel computes.
#include <bitset>

#include "similarity_kernels.h"

namespace fastembed_rt::cpu::kernels {

void dot_f32_scalar(const float* q, int64_t nq, const float* rows, int64_t nrows, int64_t dim, float* out) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t r = 0; r < nrows; ++r) {
      float acc = 0.0f;
      for (int64_t d = 0; d < dim; ++d) acc += q[i * dim + d] * rows[r * dim + d];
      out[i * nrows + r] = acc;
    }
}

void dot_i8_scalar(const int8_t* q, int64_t nq, const int8_t* rows, int64_t nrows, int64_t dim, int32_t* out) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t r = 0; r < nrows; ++r) {
      int32_t acc = 0;
      for (int64_t d = 0; d < dim; ++d) acc += int32_t{q[i * dim + d]} * int32_t{rows[r * dim + d]};
      out[i * nrows + r] = acc;
    }
}

void hamming_scalar(const uint8_t* q, int64_t nq, const uint8_t* rows, int64_t nrows, int64_t nbytes, int32_t* out) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t r = 0; r < nrows; ++r) {
      int32_t acc = 0;
      for (int64_t b = 0; b < nbytes; ++b) acc += static_cast<int32_t>(std::bitset<8>(q[i * nbytes + b] ^ rows[r * nbytes + b]).count());
      out[i * nrows + r] = acc;
    }
}

}  // namespace fastembed_rt::cpu::kernels
