// huge_buffer: the memory weights are copied into at load and the KV pool lives in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "kernels/cpu/huge_buffer.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace troupe::cpu {
namespace {

TEST(HugeBuffer, ALargeBufferStartsOnAHugePageBoundaryAndHoldsACopy) {
  std::vector<uint8_t> src((size_t{5} << 20) + 123);
  std::iota(src.begin(), src.end(), uint8_t{7});
  const huge_buffer b = huge_buffer::copy_of(src.data(), src.size());
  ASSERT_TRUE(b);
  EXPECT_EQ(b.size(), src.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % (size_t{2} << 20), 0u);
  EXPECT_TRUE(std::equal(src.begin(), src.end(), b.get()));
  EXPECT_TRUE(b.holds(b.get()));
  EXPECT_TRUE(b.holds(b.get() + src.size() - 1));
  EXPECT_FALSE(b.holds(b.get() + src.size()));
  EXPECT_FALSE(b.holds(src.data()));
}

TEST(HugeBuffer, SmallAndEmptyBuffers) {
  huge_buffer small = huge_buffer::allocate(100);
  ASSERT_TRUE(small);
  EXPECT_EQ(small.size(), 100u);
  EXPECT_EQ(small.get()[99], 0);  // zero-initialised
  const huge_buffer none = huge_buffer::allocate(0);
  EXPECT_FALSE(none);
  EXPECT_FALSE(none.holds(small.get()));
}

/// Pages of b that are resident (mincore).
size_t resident_pages(const huge_buffer& b) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((b.size() + page - 1) / page);
  if (::mincore(b.get(), b.size(), vec.data()) != 0) return 0;
  return static_cast<size_t>(std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
}

TEST(HugeBuffer, PopulateFaultsEveryPageInAtOnce) {
  const size_t bytes = size_t{6} << 20;
  const size_t pages = bytes / static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const huge_buffer lazy = huge_buffer::allocate(bytes);
  const huge_buffer ready = huge_buffer::allocate(bytes, true);
  ASSERT_TRUE(lazy && ready);
  EXPECT_EQ(resident_pages(lazy), 0u);
  EXPECT_EQ(resident_pages(ready), pages);
  EXPECT_EQ(ready.get()[bytes - 1], 0);
}

TEST(HugeBuffer, MovingHandsOverTheMemory) {
  huge_buffer a = huge_buffer::allocate(size_t{3} << 20);
  ASSERT_TRUE(a);
  uint8_t* p = a.get();
  p[0] = 42;
  huge_buffer b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from buffer is empty by contract
  EXPECT_EQ(b.get(), p);
  huge_buffer c = huge_buffer::allocate(10);
  c = std::move(b);
  EXPECT_EQ(c.get(), p);
  EXPECT_EQ(c.get()[0], 42);
}

}  // namespace
}  // namespace troupe::cpu
