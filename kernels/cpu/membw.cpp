#include "kernels/cpu/membw.hpp"
#include "kernels/cpu/huge_buffer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace troupe::cpu {
namespace {

uint64_t sum_range(const uint64_t* p, size_t n) {
  size_t i = 0;
  uint64_t s = 0;
#if defined(__AVX2__)
  // Four independent accumulators so the adds never limit the loads.
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

double measure_read_bandwidth_gbs(thread_pool& pool, size_t bytes) {
  const size_t n = std::max<size_t>(bytes / sizeof(uint64_t), 1024);
  // The same memory as the weights copied at load (huge pages), so that TLB misses do not count.
  huge_buffer buf = huge_buffer::allocate(n * sizeof(uint64_t));
  if (!buf) throw std::bad_alloc();
  auto* data = reinterpret_cast<uint64_t*>(buf.get());
  // Each thread touches the part it will read (first touch places the pages near it).
  pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) data[i] = static_cast<uint64_t>(i);
  });
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()) * 8);  // a cache line apart
  double best = 0.0;
  for (int pass = 0; pass < 4; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int ith, int nth) {
      // Ranges start on 4-element (32-byte) boundaries for the aligned loads.
      const size_t b = n / 4 * ith / nth * 4, e = ith + 1 == nth ? n : n / 4 * (ith + 1) / nth * 4;
      sums[static_cast<size_t>(ith) * 8] += sum_range(data + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s / 1e9);
  }
  // Use the sums so the reads cannot be optimised away.
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
  (void)sink;
  return best;
}

}  // namespace troupe::cpu
