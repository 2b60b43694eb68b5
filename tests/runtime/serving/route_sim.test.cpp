// The routing simulator on a small cluster: prefix affinity shows up as cache hits, the chwbl bound
// holds, plain consistent hashing piles a hot prefix onto one replica, and a seed fixes the result.
#include "runtime/serving/route_sim.hpp"

#include <gtest/gtest.h>

#include <map>

namespace troupe {
namespace {

route_sim_config small() {
  route_sim_config cfg;
  cfg.replicas = 8;
  cfg.conversations = 240;
  cfg.system_prompts = 8;
  return cfg;
}

std::map<std::string, route_sim_result> by_strategy(const std::vector<route_sim_result>& v) {
  std::map<std::string, route_sim_result> out;
  for (const auto& r : v) out[r.strategy] = r;
  return out;
}

TEST(RouteSim, ChwblHitsTheCacheMoreThanRoundRobinAndStaysWithinItsBound) {
  auto results = run_route_sim(small());
  ASSERT_TRUE(results) << results.error().what();
  ASSERT_EQ(results->size(), 4u);
  EXPECT_EQ((*results)[0].strategy, "chwbl");
  auto r = by_strategy(*results);
  ASSERT_EQ(r.size(), 4u);
  for (const auto& [name, x] : r) {
    EXPECT_GT(x.requests, 100) << name;
    EXPECT_GT(x.prompt_tokens, 0) << name;
    EXPECT_GT(x.mean_load, 0.5) << name;
    EXPECT_GE(x.peak_load, x.p99_load) << name;
    EXPECT_GE(static_cast<double>(x.peak_load), x.max_load_time_avg) << name;
    EXPECT_GE(x.max_load_time_avg, x.mean_load) << name;
  }
  const auto& chwbl = r["chwbl"];
  EXPECT_GT(chwbl.hit_rate, r["round-robin"].hit_rate + 0.1);
  EXPECT_GT(chwbl.hit_rate, r["least-loaded"].hit_rate + 0.1);
  EXPECT_EQ(chwbl.over_bound, 0) << "chwbl placed a request past ceil(c (L + 1) / n)";
  EXPECT_EQ(r["least-loaded"].over_bound, 0) << "the least loaded replica is never past the bound";
  // Unbounded hashing sends the hottest prefix to one replica, whatever it holds.
  EXPECT_GT(r["consistent-hash"].over_bound, 0);
  EXPECT_GT(r["consistent-hash"].peak_load, chwbl.peak_load);
  // Fewer prompt tokens to compute: shorter service on average.
  EXPECT_LT(chwbl.mean_service_seconds, r["round-robin"].mean_service_seconds);
}

TEST(RouteSim, ASeedFixesTheResult) {
  auto a = run_route_sim(small()), b = run_route_sim(small());
  route_sim_config other = small();
  other.seed = 2;
  auto c = run_route_sim(other);
  ASSERT_TRUE(a && b && c);
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].cached_tokens, (*b)[i].cached_tokens);
    EXPECT_EQ((*a)[i].peak_load, (*b)[i].peak_load);
    EXPECT_EQ((*a)[i].mean_load, (*b)[i].mean_load);
  }
  EXPECT_NE((*a)[0].prompt_tokens, (*c)[0].prompt_tokens);
}

TEST(RouteSim, ABadConfigIsRefusedNamingTheField) {
  route_sim_config cfg = small();
  cfg.replicas = 0;
  auto r = run_route_sim(cfg);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("replicas"), std::string::npos) << r.error().message();
  cfg = small();
  cfg.routing.load_factor = 0.5;
  r = run_route_sim(cfg);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("load_factor"), std::string::npos) << r.error().message();
  cfg = small();
  cfg.turns_max = 0;
  EXPECT_FALSE(run_route_sim(cfg));
}

}  // namespace
}  // namespace troupe
