#include "backends/cpu/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pagoda::cpu {

namespace {
// Set on pool workers and on a caller while it runs a job, so nested calls run inline.
thread_local bool t_inside_pool = false;

// How long an idle worker spins before it sleeps: longer than the gaps between the ops of a step.
constexpr int64_t kSpinMicros = 100;
// How long the caller spins on the workers before it sleeps until the last one finishes (on a
// busy machine a worker may be descheduled for milliseconds; spinning would only delay it).
constexpr int64_t kCallerSpinMicros = 20;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int num_threads) {
  const int workers = std::max(0, num_threads - 1);
  workers_.reserve(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i)
    workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  work_cv_.notify_all();
  for (auto& t : workers_)
    t.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    const int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (begin >= n_) return;
    const int64_t end = std::min(n_, begin + chunk_);
    try {
      (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_, std::memory_order_relaxed);  // hand out nothing more
      return;
    }
  }
}

void ThreadPool::worker_loop() {
  t_inside_pool = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      const int64_t until = now_micros() + kSpinMicros;
      for (int i = 1; g == seen && !stop_.load(std::memory_order_relaxed); ++i) {
        cpu_relax();
        g = generation_.load(std::memory_order_acquire);
        if (i % 64 == 0 && now_micros() > until) break;
      }
    }
    if (g == seen) {
      std::unique_lock lock(mutex_);
      sleepers_.fetch_add(1);
      work_cv_.wait(lock, [&] {
        g = generation_.load(std::memory_order_acquire);
        return stop_.load() || g != seen;
      });
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = g;
    run_chunks();
    if (pending_workers_.fetch_sub(1) == 1 && caller_waiting_.load()) {
      std::lock_guard lock(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const RangeFn& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // Several ranges per thread even out uneven ranges (attention over sequences of different
  // lengths) without making the ranges so small that handing them out costs more than the work.
  const auto threads = static_cast<int64_t>(num_threads());
  const int64_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  std::unique_lock submit(submit_mutex_, std::try_to_lock);
  if (workers_.empty() || chunk >= n || t_inside_pool || !submit.owns_lock()) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  next_.store(0, std::memory_order_relaxed);
  error_ = nullptr;
  pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Under the mutex, so that a worker deciding to sleep either sees the new generation or is
    // counted in sleepers_ before it waits.
    std::lock_guard lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (sleepers_.load() > 0) work_cv_.notify_all();
  t_inside_pool = true;
  run_chunks();
  t_inside_pool = false;
  const int64_t until = now_micros() + kCallerSpinMicros;
  for (int i = 1; pending_workers_.load(std::memory_order_acquire) != 0; ++i) {
    cpu_relax();
    if (i % 64 == 0 && now_micros() > until) {
      std::unique_lock lock(mutex_);
      caller_waiting_.store(true);
      done_cv_.wait(lock, [&] { return pending_workers_.load() == 0; });
      caller_waiting_.store(false);
      break;
    }
  }
  fn_ = nullptr;
  std::exception_ptr error;
  {
    std::lock_guard lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace pagoda::cpu
