#pragma once

// A persistent pool of worker threads for the CPU kernels. Ops split their work into index ranges
// (output rows of a matmul, (sequence, head) pairs of attention) and the calling thread works
// beside the pool until every range is done, so a step pays no thread start-up.
//
// A decode step is hundreds of short ops, so waking sleeping threads for each (a futex round trip
// of several microseconds, more on a busy machine) would cost as much as the work. Workers
// therefore spin for a short while (kSpinMicros) after each job before they sleep on a condition
// variable; the caller spins briefly on the job's completion count, then sleeps until the last
// worker wakes it (on a busy machine a descheduled worker would otherwise keep it spinning).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pagoda::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the caller: a pool of 1 starts no worker and runs everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  [[nodiscard]] int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  using RangeFn = std::function<void(int64_t begin, int64_t end)>;

  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (but the
  // last), and returns when all are done. An exception thrown by fn stops the handing out of
  // further ranges and is rethrown here (the first one, if several throw). Calls made from inside
  // a range, or while another thread's call is running, run inline on the calling thread: nested
  // and concurrent use is safe, never a deadlock.
  void parallel_for(int64_t n, int64_t grain, const RangeFn& fn);

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time

  std::mutex mutex_;  // guards sleeping on work_cv_ and error_
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::atomic<bool> caller_waiting_{false};  // the caller sleeps on done_cv_
  std::atomic<uint64_t> generation_{0};      // bumped (under mutex_) for each job; workers wait for a change
  std::atomic<int> pending_workers_{0};      // workers that have not finished the current job
  std::atomic<int> sleepers_{0};             // workers waiting on work_cv_
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;

  // The current job, written before generation_ is bumped.
  const RangeFn* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
};

// The number of CPUs this process may run on (its affinity mask), at least 1.
[[nodiscard]] int available_cpus();

}  // namespace pagoda::cpu
