#include "kernels/cpu/thread_pool.hpp"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace troupe::cpu {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// How long a worker keeps polling after a job before it sleeps. A decode step issues the next op
// within a few microseconds, so this keeps wake-up at ~1 us during a step while an idle server
// sleeps after 50 us.
constexpr auto spin_window = std::chrono::microseconds(50);

}  // namespace

struct thread_pool::impl {
  explicit impl(int n) : n_threads(n) {}

  const int n_threads;
  // Bumped once per job (and once at shutdown); workers compare it with the last one they ran.
  alignas(64) std::atomic<uint32_t> generation{0};
  // Workers that have not finished the current job yet.
  alignas(64) std::atomic<int> pending{0};
  // Workers inside generation.wait(), so run() pays for a futex wake only when someone sleeps.
  alignas(64) std::atomic<int> sleepers{0};
  job_fn fn = nullptr;
  void* ctx = nullptr;
  bool stop = false;  // written before the final generation bump, read after seeing it
  std::vector<std::thread> workers;

  void worker_loop(int ith) {
    uint32_t seen = 0;
    for (;;) {
      uint32_t gen = generation.load(std::memory_order_acquire);
      if (gen == seen) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0;; ++i) {
          // Only pause, never yield, while spinning: on a machine busy with other processes a
          // yield hands the core to them for a whole time slice (milliseconds).
          cpu_relax();
          gen = generation.load(std::memory_order_acquire);
          if (gen != seen) break;
          if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > spin_window) {
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            // wait() re-checks the value atomically with going to sleep, so a bump between the
            // load above and here is not lost; run() notifies whenever it sees a sleeper.
            generation.wait(seen, std::memory_order_seq_cst);
            sleepers.fetch_sub(1, std::memory_order_relaxed);
            gen = generation.load(std::memory_order_acquire);
            if (gen != seen) break;
          }
        }
      }
      seen = gen;
      if (stop) return;
      fn(ctx, ith, n_threads);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
};

thread_pool::thread_pool(int n_threads) : impl_(new impl(n_threads < 1 ? 1 : n_threads)) {
  impl_->workers.reserve(static_cast<size_t>(impl_->n_threads - 1));
  for (int i = 1; i < impl_->n_threads; ++i) impl_->workers.emplace_back([this, i] { impl_->worker_loop(i); });
}

thread_pool::~thread_pool() {
  impl_->stop = true;
  impl_->generation.fetch_add(1, std::memory_order_seq_cst);
  impl_->generation.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int thread_pool::size() const noexcept { return impl_->n_threads; }

void thread_pool::run_impl(job_fn fn, void* ctx) {
  impl& p = *impl_;
  if (p.n_threads == 1) {
    fn(ctx, 0, 1);
    return;
  }
  p.fn = fn;
  p.ctx = ctx;
  p.pending.store(p.n_threads - 1, std::memory_order_relaxed);
  p.generation.fetch_add(1, std::memory_order_seq_cst);
  if (p.sleepers.load(std::memory_order_seq_cst) > 0) p.generation.notify_all();
  fn(ctx, 0, p.n_threads);
  // Workers usually finish within microseconds of the caller; on a loaded machine one may have been
  // descheduled (or the pool has more threads than free cores), so yield after the spin window.
  if (p.pending.load(std::memory_order_acquire) == 0) return;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; p.pending.load(std::memory_order_acquire) != 0; ++i) {
    if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > spin_window) {
      std::this_thread::yield();
    } else {
      cpu_relax();
    }
  }
}

}  // namespace troupe::cpu
