// The router actor with a routing config: chwbl keeps requests that share a prefix on one replica
// (whose prefix cache then serves them), round-robin spreads the same requests over both, and a
// bad config is refused.
#include <gtest/gtest.h>

#include <caf/all.hpp>

#include "actors/router_actor.hpp"
#include "tests/actors/serving_fixture.hpp"

namespace troupe::testing {
namespace {

class RouterActorRouting : public serving_test {
 protected:
  /// Sends `count` requests one after another (each waits for the previous), all starting with
  /// the same 64-token prefix, and returns each replica's stats afterwards.
  std::vector<scheduler_stats> run_shared_prefix(const std::string& strategy, int count) {
    serving_config cfg;
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    auto a = spawn_replica(sys), b = spawn_replica(sys);
    routing_config routing;
    routing.strategy = strategy;
    auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}, {"stories", "stories/1", b.scheduler}}, routing);
    EXPECT_TRUE(router) << router.error().what();
    if (!router) return {};
    std::vector<int32_t> shared;
    while (shared.size() < 4 * prefix_block_tokens) {
      const auto more = prompt(shared.size() % prompt_texts().size());
      shared.insert(shared.end(), more.begin(), more.end());
    }
    shared.resize(4 * prefix_block_tokens);
    for (int i = 0; i < count; ++i) {
      std::vector<int32_t> p = shared;
      const auto tail = prompt(static_cast<size_t>(i) % prompt_texts().size());
      p.insert(p.end(), tail.begin() + 1, tail.end());  // past the BOS
      self->send(*router, std::string("stories"), make_request(static_cast<request_id>(i + 1), p, 4), caf::actor{self});
      auto got = collect(self, {static_cast<request_id>(i + 1)});
      EXPECT_NE(got[static_cast<request_id>(i + 1)].finish(), finish_kind::error);
    }
    std::vector<scheduler_stats> out{wait_idle(self, a.scheduler), wait_idle(self, b.scheduler)};
    self->send_exit(*router, caf::exit_reason::user_shutdown);
    stop(self, a);
    stop(self, b);
    return out;
  }
};

TEST_F(RouterActorRouting, ChwblKeepsASharedPrefixOnOneReplicaAndItsCache) {
  const auto st = run_shared_prefix("chwbl", 6);
  ASSERT_EQ(st.size(), 2u);
  // One request at a time: never over the bound, so every one goes to the prefix's replica.
  EXPECT_TRUE((st[0].steps > 0) != (st[1].steps > 0)) << st[0].steps << " / " << st[1].steps;
  const scheduler_stats& used = st[0].steps > 0 ? st[0] : st[1];
  EXPECT_GE(used.kv.prefix_hit_tokens, 5 * 4 * prefix_block_tokens) << "the later five found the shared blocks cached";
}

TEST_F(RouterActorRouting, RoundRobinSpreadsTheSameRequestsOverBoth) {
  const auto st = run_shared_prefix("round-robin", 6);
  ASSERT_EQ(st.size(), 2u);
  EXPECT_GT(st[0].steps, 0);
  EXPECT_GT(st[1].steps, 0);
}

TEST_F(RouterActorRouting, ABadRoutingConfigIsRefused) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  routing_config routing;
  routing.strategy = "fastest";
  auto router = spawn_router(sys, {}, routing);
  ASSERT_FALSE(router);
  EXPECT_NE(router.error().message().find("fastest"), std::string::npos);
}

}  // namespace
}  // namespace troupe::testing
