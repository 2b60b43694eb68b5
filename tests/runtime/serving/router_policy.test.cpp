#include "runtime/serving/router_policy.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace troupe {
namespace {

TEST(RouterPolicy, PicksLeastLoadedHealthyReplicaTiesById) {
  router_policy r;
  ASSERT_TRUE(r.add_replica("llama", "r2"));
  ASSERT_TRUE(r.add_replica("llama", "r1"));
  ASSERT_TRUE(r.add_replica("llama", "r3"));
  ASSERT_TRUE(r.add_replica("qwen", "q1"));
  auto p = r.pick("llama", "");
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "r1");  // all idle: smallest id
  r.on_start("r1");
  r.on_start("r2");
  EXPECT_EQ(*r.pick("llama", ""), "r3");
  r.on_start("r3");
  r.on_start("r3");
  EXPECT_EQ(*r.pick("llama", ""), "r1");
  r.on_finish("r2");
  EXPECT_EQ(*r.pick("llama", ""), "r2");
  EXPECT_EQ(*r.pick("qwen", "abc"), "q1");
  EXPECT_EQ(r.models(), (std::vector<std::string>{"llama", "qwen"}));
}

TEST(RouterPolicy, UnknownModelIsNotFoundNamingIt) {
  router_policy r;
  ASSERT_TRUE(r.add_replica("llama", "r1"));
  auto p = r.pick("mistral", "");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), errc::not_found);
  EXPECT_NE(p.error().message().find("mistral"), std::string::npos);
}

TEST(RouterPolicy, FailedReplicasAreSkippedUntilRecovered) {
  router_policy r;
  ASSERT_TRUE(r.add_replica("llama", "r1"));
  ASSERT_TRUE(r.add_replica("llama", "r2"));
  r.on_failure("r1");
  EXPECT_EQ(*r.pick("llama", ""), "r2");
  r.on_failure("r2");
  auto p = r.pick("llama", "");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), errc::unavailable);
  EXPECT_NE(p.error().message().find("llama"), std::string::npos);
  EXPECT_NE(p.error().message().find("2 unhealthy"), std::string::npos) << p.error().message();
  r.on_recovered("r2");
  EXPECT_EQ(*r.pick("llama", ""), "r2");
  EXPECT_FALSE(r.find("r1")->healthy);
}

TEST(RouterPolicy, RetryExcludesReplicasAlreadyTried) {
  router_policy r;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(r.add_replica("m", id));
  std::vector<std::string> tried{*r.pick("m", "")};
  EXPECT_EQ(tried.back(), "a");
  r.on_failure("a");
  tried.push_back(*r.pick_excluding("m", "", tried));
  EXPECT_EQ(tried.back(), "b");
  tried.push_back(*r.pick_excluding("m", "", tried));
  EXPECT_EQ(tried.back(), "c");
  auto none = r.pick_excluding("m", "", tried);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("already tried"), std::string::npos);
}

TEST(RouterPolicy, ReplicasAreAddedOnceAndRemoved) {
  router_policy r;
  ASSERT_TRUE(r.add_replica("m", "a"));
  EXPECT_FALSE(r.add_replica("m", "a"));
  EXPECT_TRUE(r.remove_replica("a"));
  EXPECT_FALSE(r.remove_replica("a"));
  EXPECT_FALSE(r.pick("m", ""));
  EXPECT_TRUE(r.models().empty());
}

/// A strategy that always takes the last candidate: the router uses whatever it is given.
class last_strategy final : public replica_strategy {
 public:
  const replica_info& choose(std::span<const replica_info* const> c, std::string_view) override { return *c.back(); }
};

TEST(RouterPolicy, ChoiceIsDelegatedToTheStrategy) {
  router_policy r(std::make_unique<last_strategy>());
  ASSERT_TRUE(r.add_replica("m", "a"));
  ASSERT_TRUE(r.add_replica("m", "b"));
  EXPECT_EQ(*r.pick("m", "key"), "b");
}

}  // namespace
}  // namespace troupe
