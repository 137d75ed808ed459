// A minimal parallel-for over an index range: the kernels split independent rows across threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace fastembed_rt::cpu {

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread.
// num_threads <= 1 (or a tiny n) runs inline on the caller's thread.
template <typename Fn>
void parallel_for(int64_t n, int num_threads, Fn fn) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, n));
  if (threads == 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) workers.emplace_back(fn, begin, end);
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& w : workers) w.join();
}

}  // namespace fastembed_rt::cpu
