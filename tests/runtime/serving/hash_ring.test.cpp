// The consistent-hash ring: owners depend on the members alone, a join moves about 1/N of the keys
// (all to the newcomer), and a member that leaves and returns owns its keys again.
#include "runtime/serving/hash_ring.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace troupe {
namespace {

std::vector<uint64_t> key_hashes(int n) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(hash_ring::hash_key("key-" + std::to_string(i)));
  return out;
}

std::vector<std::string> owners(const hash_ring& ring, const std::vector<uint64_t>& keys) {
  std::vector<std::string> out;
  for (uint64_t k : keys) out.push_back(ring.id_of(ring.owner(k)));
  return out;
}

hash_ring ring_of(int members, int virtual_nodes = 128) {
  hash_ring ring(virtual_nodes);
  for (int i = 0; i < members; ++i) ring.add("r" + std::to_string(i));
  return ring;
}

TEST(HashRing, OwnersDependOnTheMembersNotTheOrderTheyJoined) {
  hash_ring forward = ring_of(10), backward(128);
  for (int i = 9; i >= 0; --i) backward.add("r" + std::to_string(i));
  forward.add("r3");  // a second add is a no-op
  EXPECT_EQ(forward.size(), 10u);
  const auto keys = key_hashes(2000);
  EXPECT_EQ(owners(forward, keys), owners(backward, keys));
  EXPECT_EQ(hash_ring(128).owner(keys[0]), -1);
}

TEST(HashRing, KeysSpreadEvenlyOverTheMembersEvenWithShortSimilarIds) {
  hash_ring ring(128);
  for (int i = 0; i < 8; ++i) ring.add("m/" + std::to_string(i));  // 3-byte ids once shared their points
  std::map<std::string, int> count;
  for (const auto& o : owners(ring, key_hashes(80000))) ++count[o];
  ASSERT_EQ(count.size(), 8u);
  for (const auto& [id, n] : count) {
    EXPECT_GT(n, 10000 * 0.7) << id;  // 128 points per member: within about +-30% of the mean
    EXPECT_LT(n, 10000 * 1.3) << id;
  }
}

TEST(HashRing, AJoinMovesAboutOneNthOfTheKeysAllToTheNewMember) {
  hash_ring ring = ring_of(10);
  const auto keys = key_hashes(20000);
  const auto before = owners(ring, keys);
  ring.add("r10");
  const auto after = owners(ring, keys);
  int moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (before[i] == after[i]) continue;
    ++moved;
    EXPECT_EQ(after[i], "r10") << "key " << i << " moved between old members";
  }
  const double fraction = static_cast<double>(moved) / static_cast<double>(keys.size());
  EXPECT_GT(fraction, 0.5 / 11) << fraction;
  EXPECT_LT(fraction, 1.6 / 11) << fraction;
}

TEST(HashRing, AMemberThatLeavesAndReturnsOwnsItsKeysAgain) {
  hash_ring ring = ring_of(6);
  const auto keys = key_hashes(5000);
  const auto before = owners(ring, keys);
  ring.remove("r2");
  EXPECT_FALSE(ring.contains("r2"));
  const auto without = owners(ring, keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (before[i] == "r2") {
      EXPECT_NE(without[i], "r2");
    } else {
      EXPECT_EQ(without[i], before[i]) << "key " << i << " of a member that stayed moved";
    }
  }
  ring.add("x");   // takes the free slot; its own points
  ring.remove("x");
  ring.add("r2");
  EXPECT_EQ(owners(ring, keys), before);
}

TEST(HashRing, AWalkVisitsEveryMemberAndStopsWhereAsked) {
  const hash_ring ring = ring_of(5, 4);
  std::map<int32_t, int> seen;
  EXPECT_EQ(ring.walk(hash_ring::hash_key("k"), [&](int32_t s) {
    ++seen[s];
    return false;
  }),
            -1);
  EXPECT_EQ(seen.size(), 5u);
  for (const auto& [slot, n] : seen) EXPECT_EQ(n, 4) << ring.id_of(slot);
  const int32_t r3 = ring.slot("r3");
  EXPECT_EQ(ring.walk(hash_ring::hash_key("k"), [&](int32_t s) { return s == r3; }), r3);
}

}  // namespace
}  // namespace troupe
