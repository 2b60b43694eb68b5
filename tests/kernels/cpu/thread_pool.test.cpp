#include "kernels/cpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace troupe::cpu {
namespace {

TEST(ThreadPool, EveryThreadRunsOncePerJob) {
  for (int n : {1, 2, 3, 4}) {
    thread_pool pool(n);
    ASSERT_EQ(pool.size(), n);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> bad_nth{0};
    // Fewer jobs when the pool has more threads than this 2-core test machine has cores.
    const int jobs = n <= 2 ? 5000 : 500;
    for (int j = 0; j < jobs; ++j) {
      pool.run([&](int ith, int nth) {
        if (nth != n) bad_nth.fetch_add(1);
        hits[static_cast<size_t>(ith)].fetch_add(1);
      });
    }
    for (int i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), jobs) << "n=" << n << " ith=" << i;
    EXPECT_EQ(bad_nth.load(), 0);
  }
}

TEST(ThreadPool, RunReturnsOnlyWhenAllThreadsAreDone) {
  thread_pool pool(3);
  for (int j = 0; j < 2000; ++j) {
    std::atomic<int> done{0};
    pool.run([&](int ith, int) {
      if (ith == 2 && j % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      done.fetch_add(1);
    });
    ASSERT_EQ(done.load(), 3) << "job " << j;
  }
}

TEST(ThreadPool, WakesWorkersThatWentToSleep) {
  thread_pool pool(2);
  for (int j = 0; j < 5; ++j) {
    // Long enough for the workers to leave the spin loop and sleep.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> sum{0};
    pool.run([&](int ith, int) { sum.fetch_add(ith + 1); });
    EXPECT_EQ(sum.load(), 3);
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeOnce) {
  thread_pool pool(3);
  for (int64_t n : {0, 1, 2, 3, 7, 1000}) {
    std::vector<int> seen(static_cast<size_t>(n), 0);
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, AcceptsAnLvalueCallable) {
  thread_pool pool(2);
  std::atomic<int> count{0};
  auto fn = [&](int, int) { count.fetch_add(1); };
  pool.run(fn);
  EXPECT_EQ(count.load(), 2);
}

}  // namespace
}  // namespace troupe::cpu
