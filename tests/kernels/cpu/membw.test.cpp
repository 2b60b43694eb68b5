#include "kernels/cpu/membw.hpp"

#include <gtest/gtest.h>

namespace troupe::cpu {
namespace {

TEST(MemoryBandwidth, ReportsAPlausibleFigure) {
  thread_pool pool(2);
  // A small buffer keeps the test quick; the figure is then cache bandwidth, still finite and > 0.
  const double gbs = measure_read_bandwidth_gbs(pool, size_t{16} << 20);
  EXPECT_GT(gbs, 0.5);
  EXPECT_LT(gbs, 10000.0);
}

}  // namespace
}  // namespace troupe::cpu
