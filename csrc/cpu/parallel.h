// A minimal parallel-for over an index range: the kernels split independent rows across threads.
#pragma once

#include <algorithm>
#include <atomic>
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

// Runs fn(worker, i) for every i in [0, n), each of `num_threads` workers (0, 1, ...) taking the next
// index when it finishes the last: balances items of very different cost (sequences of different lengths).
template <typename Fn>
void parallel_for_each(int64_t n, int num_threads, Fn fn) {
  std::atomic<int64_t> next{0};
  auto worker = [&](int id) {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(id, i);
  };
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, n)));
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) workers.emplace_back(worker, t);
  worker(0);
  for (auto& w : workers) w.join();
}

// Threads only pay off once the work amortizes starting them (~20 us each).
inline int threads_for(double work, int num_threads, double work_per_thread = 1 << 18) {
  return work >= work_per_thread ? num_threads : 1;
}

}  // namespace fastembed_rt::cpu
