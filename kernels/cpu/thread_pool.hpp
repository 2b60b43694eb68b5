#pragma once
// A fixed pool of worker threads for the CPU kernels. The caller takes part as thread 0, so a pool of
// n threads starts n - 1 workers. Workers spin briefly between jobs (a decode step runs hundreds of
// small parallel ops, and a sleeping wake-up costs more than the op) and then sleep.

#include <cstdint>
#include <type_traits>

namespace troupe::cpu {

class thread_pool {
 public:
  /// n_threads >= 1, the caller included.
  explicit thread_pool(int n_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Number of threads that run a job, the caller included.
  int size() const noexcept;

  /// Runs fn(ith, nth) once on every thread (ith in [0, nth)) and returns when all are done.
  /// Not reentrant: fn must not call run() on the same pool.
  template <class F>
  void run(F&& fn) {
    using fn_type = std::remove_reference_t<F>;
    run_impl([](void* ctx, int ith, int nth) { (*static_cast<fn_type*>(ctx))(ith, nth); },
             const_cast<void*>(static_cast<const void*>(&fn)));
  }

  /// Splits [0, n) into size() contiguous ranges and runs fn(begin, end) on each, in parallel.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    run([&](int ith, int nth) {
      const int64_t begin = n * ith / nth, end = n * (ith + 1) / nth;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  using job_fn = void (*)(void*, int, int);
  void run_impl(job_fn fn, void* ctx);
  struct impl;
  impl* impl_;
};

}  // namespace troupe::cpu
