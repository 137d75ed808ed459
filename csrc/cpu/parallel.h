// Parallel loops over index ranges on a persistent worker pool: the kernels split independent rows or
// items across threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fastembed_rt::cpu {

// Persistent workers: starting threads per kernel call would cost more than the fused encoder's
// microsecond-sized pieces of work. Workers spin briefly after each job, then sleep until the next one.
// One job at a time: concurrent callers queue on run_mutex_.
class WorkerPool {
 public:
  // This process's pool. A child made by fork() has none of its parent's worker threads, so it starts a
  // pool of its own (the inherited one is abandoned, never touched: posting to it would wait forever).
  // Pools live until the process exits, which ends their threads.
  static WorkerPool& instance() {
    static std::mutex lock;
    static WorkerPool* pool = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> guard(lock);
    if (pool == nullptr || owner != getpid()) {
      pool = new WorkerPool();
      owner = getpid();
    }
    return *pool;
  }

  // Calls fn(worker) for worker in [0, threads): worker 0 on the calling thread.
  void run(int threads, const std::function<void(int)>& fn) {
    threads = std::max(1, std::min(threads, kMaxWorkers + 1));
    if (threads == 1) return fn(0);
    std::lock_guard<std::mutex> one_job(run_mutex_);
    ensure_workers(threads - 1);
    job_ = &fn;
    pending_.store(threads - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const uint64_t next = (ticket_.load(std::memory_order_relaxed) >> kThreadBits) + 1;
      ticket_.store(next << kThreadBits | static_cast<uint64_t>(threads), std::memory_order_release);
    }
    wake_.notify_all();
    fn(0);
    // Spin briefly, then yield: a worker that shares this core must get to run (measured: pure spinning
    // gave 6 ms stalls at the 99th percentile of single queries on 2 cores).
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0;) {
      if (++spins > 2000) std::this_thread::yield();
    }
  }

  // While a Hold lives, idle workers keep polling instead of sleeping: a caller about to post many
  // small jobs in a row (the fused encoder) saves a wake-up (~50 us) per job. After it, they poll on for
  // kLinger: a single query is followed by some Python (pooling, the next text's tokens) and often by the next
  // query, which then finds them awake (MiniLM under AVX2, p50 of `encode(query)`: int8 -12%, float32 -6%).
  class Hold {
   public:
    Hold() { instance().holds_.fetch_add(1); }
    ~Hold() { instance().holds_.fetch_sub(1); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
  };

 private:
  static constexpr int kMaxWorkers = 63;
  static constexpr int kSpins = 20000;  // ~10-20 us of polling before sleeping: GEMMs follow on these cores
  static constexpr std::chrono::microseconds kLinger{1000};
  // A job's ticket: its number, then its thread count in the low bits. One atomic word, so that a worker never
  // pairs one job's number with another's thread count.
  static constexpr int kThreadBits = 7;
  static int threads_of(uint64_t ticket) { return static_cast<int>(ticket & ((1u << kThreadBits) - 1)); }

  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      // The new worker starts from the current ticket, so the job about to be posted is news to it.
      const int id = static_cast<int>(workers_.size()) + 1;
      const uint64_t ticket = ticket_.load(std::memory_order_acquire);
      workers_.emplace_back([this, id, ticket] { work(id, ticket); });
    }
  }

  void work(int id, uint64_t seen) {
    for (;;) {
      // Only a worker the last job used polls for the next one. Workers left from an earlier call with more
      // threads sleep: polling, they took cores from the job's own threads (after one 4-thread call on a
      // 2-core machine, 60 single queries took 4.1 s instead of 0.7 s).
      const bool polls = id < threads_of(seen);
      int spins = 0;
      bool held = false;
      std::chrono::steady_clock::time_point linger_until{};
      while (polls && ticket_.load(std::memory_order_acquire) == seen) {
        if (holds_.load(std::memory_order_relaxed) > 0) {
          held = true, spins = 0, linger_until = {};
          continue;
        }
        if (++spins < kSpins) continue;
        if (!held) break;
        const auto now = std::chrono::steady_clock::now();  // after a Hold: the clock every kSpins polls
        if (linger_until == std::chrono::steady_clock::time_point{}) {
          linger_until = now + kLinger;
        } else if (now >= linger_until) {
          break;
        }
        spins = 0;
      }
      if (ticket_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return ticket_.load(std::memory_order_acquire) != seen; });
      }
      seen = ticket_.load(std::memory_order_acquire);
      if (id < threads_of(seen)) {
        (*job_)(id);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> holds_{0};
  const std::function<void(int)>* job_ = nullptr;
};

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread of the pool.
// num_threads <= 1 (or a tiny n) runs inline on the caller's thread.
template <typename Fn>
void parallel_for(int64_t n, int num_threads, Fn fn) {
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, n)));
  if (threads == 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  WorkerPool::instance().run(threads, [&](int worker) {
    const int64_t begin = worker * chunk, end = std::min(n, begin + chunk);
    if (begin < end) fn(begin, end);
  });
}

// Runs fn(worker, i) for every i in [0, n), each of `num_threads` workers (0, 1, ...) taking the next
// index when it finishes the last: balances items of very different cost (sequences of different lengths).
template <typename Fn>
void parallel_for_each(int64_t n, int num_threads, Fn fn) {
  std::atomic<int64_t> next{0};
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, n)));
  WorkerPool::instance().run(threads, [&](int worker) {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(worker, i);
  });
}

// Threads only pay off once the work amortizes starting them (~20 us each).
inline int threads_for(double work, int num_threads, double work_per_thread = 1 << 18) {
  return work >= work_per_thread ? num_threads : 1;
}

}  // namespace fastembed_rt::cpu
