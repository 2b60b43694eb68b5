// The router's strategies through router_policy: the factory, the prefix key, consistent hashing's
// affinity, the chwbl load bound under adversarial traffic, health and membership changes, and
// determinism.
#include "runtime/serving/routing_strategies.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace troupe {
namespace {

router_policy make_policy(const std::string& strategy, int replicas, bool reverse_order = false) {
  routing_config cfg;
  cfg.strategy = strategy;
  auto s = make_replica_strategy(cfg);
  EXPECT_TRUE(s) << s.error().what();
  router_policy p(std::move(*s));
  for (int i = 0; i < replicas; ++i) {
    const int r = reverse_order ? replicas - 1 - i : i;
    EXPECT_TRUE(p.add_replica("m", "m/" + std::to_string(r)));
  }
  return p;
}

std::string key(int i) { return "prefix-" + std::to_string(i); }

std::vector<std::string> picks(router_policy& p, int n_keys) {
  std::vector<std::string> out;
  for (int i = 0; i < n_keys; ++i) out.push_back(*p.pick("m", key(i)));
  return out;
}

/// ceil(1.25 * (total + 1) / n) in integers: the bound, computed independently of the code under test.
int64_t bound_125(int64_t total, int64_t n) { return (5 * (total + 1) + 4 * n - 1) / (4 * n); }

TEST(RoutingStrategies, TheFactoryMakesEachNamedStrategyAndRefusesOthersNamingThem) {
  for (std::string_view name : routing_strategy_names()) {
    routing_config cfg;
    cfg.strategy = std::string(name);
    EXPECT_TRUE(make_replica_strategy(cfg)) << name;
  }
  routing_config cfg;
  cfg.strategy = "fastest";
  auto s = make_replica_strategy(cfg);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), errc::invalid_argument);
  EXPECT_NE(s.error().message().find("'fastest'"), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("chwbl, consistent-hash, least-loaded, round-robin"), std::string::npos);
  cfg.strategy = "chwbl";
  cfg.load_factor = 0.9;  // below 1 the bound could leave no replica eligible
  s = make_replica_strategy(cfg);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("routing.load_factor"), std::string::npos) << s.error().message();
  cfg.load_factor = 1.25;
  cfg.virtual_nodes = 0;
  EXPECT_FALSE(make_replica_strategy(cfg));
}

TEST(RoutingStrategies, ThePrefixKeyCountsWholeBlocksOnly) {
  std::vector<int32_t> prompt(100);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(1000 + i);
  auto tokens_in = [](const std::string& k) { return k.size() / sizeof(int32_t); };
  std::span<const int32_t> all(prompt);
  EXPECT_EQ(tokens_in(prefix_key(all, 4)), 64u);               // 4 blocks of 16
  EXPECT_EQ(tokens_in(prefix_key(all.first(40), 4)), 32u);     // 2 whole blocks; the partial third is left out
  EXPECT_EQ(tokens_in(prefix_key(all.first(10), 4)), 10u);     // shorter than a block: all of it
  EXPECT_EQ(tokens_in(prefix_key(all, 2)), 32u);
  EXPECT_EQ(tokens_in(prefix_key(all, 8, 8)), 64u);
  EXPECT_EQ(prefix_key(all.first(40), 4), std::string(reinterpret_cast<const char*>(prompt.data()), 32 * sizeof(int32_t)));
  // Prompts that differ only past the key's blocks share it; within them, they do not.
  std::vector<int32_t> other = prompt;
  other[70] = 7;
  EXPECT_EQ(prefix_key(other, 4), prefix_key(prompt, 4));
  other[63] = 7;
  EXPECT_NE(prefix_key(other, 4), prefix_key(prompt, 4));
  EXPECT_TRUE(prefix_key({}, 4).empty());
}

TEST(RoutingStrategies, ConsistentHashingSendsAKeyToTheSameReplicaWhateverTheLoad) {
  router_policy p = make_policy("consistent-hash", 8);
  const auto first = picks(p, 400);
  EXPECT_GE(std::set<std::string>(first.begin(), first.end()).size(), 7u) << "keys should spread";
  for (int i = 0; i < 50; ++i) p.on_start(first[0]);  // one replica heavily loaded: no bound here
  EXPECT_EQ(picks(p, 400), first);
}

TEST(RoutingStrategies, ChwblKeepsAKeyOnItsReplicaUntilItReachesTheBound) {
  router_policy ch = make_policy("consistent-hash", 4), b = make_policy("chwbl", 4);
  const std::string owner = *ch.pick("m", key(1));
  EXPECT_EQ(*b.pick("m", key(1)), owner);
  // One request on every replica: the owner may take a second, 1 + 1 <= ceil(1.25 * 5 / 4) = 2.
  for (int i = 0; i < 4; ++i) b.on_start("m/" + std::to_string(i));
  EXPECT_EQ(*b.pick("m", key(1)), owner);
  // With that second one on it, a third would pass ceil(1.25 * 6 / 4) = 2: the walk moves on.
  b.on_start(owner);
  const std::string next = *b.pick("m", key(1));
  EXPECT_NE(next, owner);
  b.on_finish(owner);
  EXPECT_EQ(*b.pick("m", key(1)), owner) << "affinity returns once the load drops";
}

TEST(RoutingStrategies, ChwblNeverPassesTheBoundUnderSameKeyTraffic) {
  const int n = 8;
  router_policy p = make_policy("chwbl", n);
  std::vector<std::string> in_flight;
  uint64_t x = 12345;
  std::set<std::string> used;
  for (int step = 0; step < 2000; ++step) {
    int64_t total = 0;
    for (int r = 0; r < n; ++r) total += p.find("m/" + std::to_string(r))->in_flight;
    const std::string got = *p.pick("m", "the same hot prefix");
    ASSERT_LE(p.find(got)->in_flight + 1, bound_125(total, n)) << "step " << step << ", total " << total;
    p.on_start(got);
    in_flight.push_back(got);
    used.insert(got);
    // Now and then some requests finish (a fixed LCG: the same sequence every run).
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    if ((x >> 60) < 6 && !in_flight.empty()) {
      const size_t victim = static_cast<size_t>((x >> 20) % in_flight.size());
      p.on_finish(in_flight[victim]);
      in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(victim));
    }
  }
  // The hot key spills over along the ring: each replica on the way holds up to c times the mean,
  // so ceil(n / c) = 7 of the 8 take a share (the eighth would only be needed with c < 8/7).
  EXPECT_EQ(used.size(), 7u);
}

TEST(RoutingStrategies, AnUnhealthyReplicaIsSkippedAndItsKeysComeBackAfterRecovery) {
  for (const char* strategy : {"chwbl", "consistent-hash"}) {
    router_policy p = make_policy(strategy, 5);
    const auto before = picks(p, 300);
    const std::string sick = before[0];
    p.on_failure(sick);
    const auto during = picks(p, 300);
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_NE(during[i], sick) << strategy;
      if (before[i] != sick) {
        EXPECT_EQ(during[i], before[i]) << strategy << ": key " << i << " of a healthy replica moved";
      }
    }
    // A retry skips the replica already tried, and otherwise keeps to the ring order.
    const std::vector<std::string> tried{before[1]};
    auto retry = p.pick_excluding("m", key(1), tried);
    ASSERT_TRUE(retry);
    EXPECT_NE(*retry, before[1]);
    p.on_recovered(sick);
    EXPECT_EQ(picks(p, 300), before) << strategy;
  }
}

TEST(RoutingStrategies, RemovingAReplicaMovesOnlyItsKeysAndAddingItBackRestoresThem) {
  router_policy p = make_policy("chwbl", 6);
  const auto before = picks(p, 300);
  ASSERT_TRUE(p.remove_replica("m/4"));
  const auto during = picks(p, 300);
  for (size_t i = 0; i < before.size(); ++i)
    if (before[i] != "m/4") {
      EXPECT_EQ(during[i], before[i]) << "key " << i;
    }
  ASSERT_TRUE(p.add_replica("m", "m/4"));
  EXPECT_EQ(picks(p, 300), before);
}

TEST(RoutingStrategies, ChoicesAreDeterministicWhateverOrderReplicasJoined) {
  for (const char* strategy : {"chwbl", "consistent-hash"}) {
    router_policy a = make_policy(strategy, 16), b = make_policy(strategy, 16, /*reverse_order=*/true);
    for (int i = 0; i < 500; ++i) {
      const std::string k = key(i % 37);
      const std::string pa = *a.pick("m", k), pb = *b.pick("m", k);
      ASSERT_EQ(pa, pb) << strategy << " request " << i;
      a.on_start(pa);
      b.on_start(pb);
      if (i % 3 == 0) {
        a.on_finish(pa);
        b.on_finish(pb);
      }
    }
  }
}

TEST(RoutingStrategies, RoundRobinTakesEachHealthyReplicaInTurn) {
  router_policy p = make_policy("round-robin", 3);
  std::vector<std::string> got;
  for (int i = 0; i < 6; ++i) got.push_back(*p.pick("m", "same"));
  EXPECT_EQ(got, (std::vector<std::string>{"m/0", "m/1", "m/2", "m/0", "m/1", "m/2"}));
  p.on_failure("m/1");
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.insert(*p.pick("m", "same"));
  EXPECT_EQ(seen, (std::set<std::string>{"m/0", "m/2"}));
}

TEST(RoutingStrategies, EachModelHasItsOwnRing) {
  routing_config cfg;
  router_policy p(std::move(*make_replica_strategy(cfg)));
  for (const char* id : {"a/0", "a/1", "a/2"}) ASSERT_TRUE(p.add_replica("a", id));
  for (const char* id : {"b/0", "b/1"}) ASSERT_TRUE(p.add_replica("b", id));
  std::map<std::string, std::string> b_before;
  for (int i = 0; i < 100; ++i) {
    const std::string got = *p.pick("b", key(i));
    EXPECT_EQ(got.substr(0, 2), "b/");
    b_before[key(i)] = got;
  }
  for (const char* id : {"a/0", "a/1", "a/2"}) ASSERT_TRUE(p.remove_replica(id));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(*p.pick("b", key(i)), b_before[key(i)]);
  EXPECT_FALSE(p.pick("a", key(0)));
}

}  // namespace
}  // namespace troupe
