// weight_buffer: the memory weights are copied into at load.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "kernels/cpu/weight_memory.hpp"

namespace troupe::cpu {
namespace {

TEST(WeightBuffer, ALargeBufferStartsOnAHugePageBoundaryAndHoldsACopy) {
  std::vector<uint8_t> src((size_t{5} << 20) + 123);
  std::iota(src.begin(), src.end(), uint8_t{7});
  const weight_buffer b = weight_buffer::copy_of(src.data(), src.size());
  ASSERT_TRUE(b);
  EXPECT_EQ(b.size(), src.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % (size_t{2} << 20), 0u);
  EXPECT_TRUE(std::equal(src.begin(), src.end(), b.get()));
  EXPECT_TRUE(b.holds(b.get()));
  EXPECT_TRUE(b.holds(b.get() + src.size() - 1));
  EXPECT_FALSE(b.holds(b.get() + src.size()));
  EXPECT_FALSE(b.holds(src.data()));
}

TEST(WeightBuffer, SmallAndEmptyBuffers) {
  weight_buffer small = weight_buffer::allocate(100);
  ASSERT_TRUE(small);
  EXPECT_EQ(small.size(), 100u);
  EXPECT_EQ(small.get()[99], 0);  // zero-initialised
  const weight_buffer none = weight_buffer::allocate(0);
  EXPECT_FALSE(none);
  EXPECT_FALSE(none.holds(small.get()));
}

TEST(WeightBuffer, MovingHandsOverTheMemory) {
  weight_buffer a = weight_buffer::allocate(size_t{3} << 20);
  ASSERT_TRUE(a);
  uint8_t* p = a.get();
  p[0] = 42;
  weight_buffer b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from buffer is empty by contract
  EXPECT_EQ(b.get(), p);
  weight_buffer c = weight_buffer::allocate(10);
  c = std::move(b);
  EXPECT_EQ(c.get(), p);
  EXPECT_EQ(c.get()[0], 42);
}

}  // namespace
}  // namespace troupe::cpu
