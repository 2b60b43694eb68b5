#pragma once
// Achievable memory read bandwidth of this machine with a pool's threads: the ceiling that a
// memory-bound decode step is compared against.

#include <cstddef>

#include "kernels/cpu/thread_pool.hpp"

namespace troupe::cpu {

/// GB/s (1e9 bytes/s) read by summing a buffer of `bytes` with all of the pool's threads; the best
/// of a few passes after the buffer has been touched once (so page faults are not counted).
double measure_read_bandwidth_gbs(thread_pool& pool, size_t bytes = size_t{1} << 30);

}  // namespace troupe::cpu
