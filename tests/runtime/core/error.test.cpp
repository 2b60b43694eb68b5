#include "runtime/core/error.hpp"

#include <gtest/gtest.h>

#include <string>

namespace troupe {
namespace {

expected<int> parse_positive(int x) {
  if (x <= 0) return make_error(errc::invalid_argument, "x must be positive, got " + std::to_string(x));
  return x;
}

expected<int> twice(int x) {
  TROUPE_TRY(parse_positive(x));
  return 2 * x;
}

TEST(Expected, HoldsValueOrError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), errc::invalid_argument);
  EXPECT_EQ(bad.error().what(), "invalid_argument: x must be positive, got -1");
}

TEST(Expected, TryPropagatesTheError) {
  EXPECT_EQ(*twice(4), 8);
  auto bad = twice(0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace troupe
