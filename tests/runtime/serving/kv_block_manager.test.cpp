#include "runtime/serving/kv_block_manager.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace troupe {
namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<int32_t> table_of(const kv_block_manager& m, request_id id) {
  auto t = m.table(id);
  return {t.begin(), t.end()};
}

TEST(KvBlockManager, SecondRequestReusesThreeCachedBlocksOfSharedPrefix) {
  kv_block_manager m({16, 32, true});
  const auto shared = iota_tokens(48, 100);  // three full blocks
  auto a = shared;
  for (int i = 0; i < 5; ++i) a.push_back(1000 + i);
  auto got = m.allocate(1, a, static_cast<int64_t>(a.size()));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 0);
  ASSERT_EQ(m.table(1).size(), 4u);
  m.cache_full_blocks(1, a, static_cast<int64_t>(a.size()));

  auto b = shared;
  for (int i = 0; i < 7; ++i) b.push_back(2000 + i);  // different suffix
  EXPECT_EQ(m.cached_prefix(b), 48);
  got = m.allocate(2, b, static_cast<int64_t>(b.size()));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 48);
  const auto ta = table_of(m, 1), tb = table_of(m, 2);
  ASSERT_EQ(tb.size(), 4u);
  EXPECT_EQ(std::vector<int32_t>(ta.begin(), ta.begin() + 3), std::vector<int32_t>(tb.begin(), tb.begin() + 3));
  EXPECT_NE(ta[3], tb[3]);  // the suffix diverges into its own block
  for (int i = 0; i < 3; ++i) EXPECT_EQ(m.ref_count(ta[static_cast<size_t>(i)]), 2);
  EXPECT_EQ(m.ref_count(tb[3]), 1);

  // A prompt differing inside the second block shares only the first.
  auto c = a;
  c[20] = 7;
  got = m.allocate(3, c, static_cast<int64_t>(c.size()));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 16);
  EXPECT_EQ(table_of(m, 3)[0], ta[0]);
  EXPECT_NE(table_of(m, 3)[1], ta[1]);

  const auto st = m.stats();
  EXPECT_EQ(st.prefix_query_tokens, static_cast<int64_t>(a.size() + b.size() + c.size()));
  EXPECT_EQ(st.prefix_hit_tokens, 48 + 16);
  EXPECT_EQ(st.blocks_used, 4 + 1 + 3);
}

TEST(KvBlockManager, FullyCachedPromptStillRecomputesItsLastToken) {
  kv_block_manager m({16, 16, true});
  const auto t = iota_tokens(48, 5);
  ASSERT_TRUE(m.allocate(1, t, 48));
  m.cache_full_blocks(1, t, 48);
  m.free(1);
  EXPECT_EQ(m.stats().blocks_cached, 3);
  EXPECT_EQ(m.cached_prefix(t), 32);  // the third block holds the last token: recomputed
  auto longer = t;
  longer.push_back(9);
  EXPECT_EQ(m.cached_prefix(longer), 48);
  auto got = m.allocate(2, t, 48);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 32);
}

TEST(KvBlockManager, OnlyComputedFullBlocksAreCached) {
  kv_block_manager m({16, 16, true});
  const auto t = iota_tokens(40, 5);
  ASSERT_TRUE(m.allocate(1, t, 40));
  m.cache_full_blocks(1, t, 20);  // only the first block's KV is computed so far
  auto probe = t;
  EXPECT_EQ(m.cached_prefix(probe), 16);
  m.cache_full_blocks(1, t, 40);  // the partial third block is never cached
  EXPECT_EQ(m.cached_prefix(probe), 32);
  m.free(1);
  EXPECT_EQ(m.stats().blocks_cached, 2);
}

TEST(KvBlockManager, PrefixCachingDisabledFindsNothing) {
  kv_block_manager m({16, 16, false});
  const auto t = iota_tokens(40, 5);
  ASSERT_TRUE(m.allocate(1, t, 40));
  m.cache_full_blocks(1, t, 40);
  m.free(1);
  EXPECT_EQ(m.cached_prefix(t), 0);
  EXPECT_EQ(m.stats().blocks_cached, 0);
}

TEST(KvBlockManager, UnreferencedCachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  kv_block_manager m({4, 4, true});
  const auto a = iota_tokens(5, 10), b = iota_tokens(5, 20), d = iota_tokens(12, 40);
  ASSERT_TRUE(m.allocate(1, a, 5));
  m.cache_full_blocks(1, a, 5);
  m.free(1);
  ASSERT_TRUE(m.allocate(2, b, 5));
  m.cache_full_blocks(2, b, 5);
  m.free(2);
  EXPECT_EQ(m.stats().blocks_cached, 2);
  EXPECT_EQ(m.n_free(), 4);

  // Touch a's block: b's becomes the least recently used.
  auto hit = m.allocate(3, a, 5);
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, 4);
  m.free(3);

  // Three fresh blocks: the two never-cached ones first, then one eviction (b's block).
  ASSERT_TRUE(m.allocate(4, d, 12));
  EXPECT_EQ(m.stats().evictions, 1);
  EXPECT_EQ(m.cached_prefix(a), 4);
  EXPECT_EQ(m.cached_prefix(b), 0);
  // One more block evicts a's as well.
  std::vector<block_copy> copies;
  EXPECT_TRUE(m.append_slots(4, 12, 13, copies));
  EXPECT_EQ(m.cached_prefix(a), 0);
  EXPECT_EQ(m.stats().evictions, 2);
  EXPECT_EQ(m.n_free(), 0);
}

TEST(KvBlockManager, ForkSharesBlocksAndCopyOnWriteCopiesTheSharedPartialBlock) {
  kv_block_manager m({4, 8, true});
  const auto t = iota_tokens(6, 1);  // one full block, one partial
  ASSERT_TRUE(m.allocate(1, t, 6));
  const auto parent = table_of(m, 1);
  ASSERT_TRUE(m.fork(1, 2));
  EXPECT_EQ(table_of(m, 2), parent);
  EXPECT_EQ(m.ref_count(parent[0]), 2);
  EXPECT_EQ(m.ref_count(parent[1]), 2);
  EXPECT_FALSE(m.fork(1, 2));  // child exists
  EXPECT_FALSE(m.fork(9, 3));  // parent unknown

  // The child writes position 6 (inside the shared partial block): it gets a private copy.
  std::vector<block_copy> copies;
  ASSERT_TRUE(m.append_slots(2, 6, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  const auto child = table_of(m, 2);
  EXPECT_EQ(copies[0].src, parent[1]);
  EXPECT_EQ(copies[0].dst, child[1]);
  EXPECT_NE(child[1], parent[1]);
  EXPECT_EQ(child[0], parent[0]);  // the full block stays shared
  EXPECT_EQ(m.ref_count(parent[0]), 2);
  EXPECT_EQ(m.ref_count(parent[1]), 1);
  EXPECT_EQ(m.ref_count(child[1]), 1);

  // The parent now owns its block alone: it writes in place.
  copies.clear();
  ASSERT_TRUE(m.append_slots(1, 6, 7, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(m, 1), parent);

  // Growing into a new block copies nothing.
  ASSERT_TRUE(m.append_slots(2, 7, 9, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(m.table(2).size(), 3u);

  m.free(1);
  EXPECT_EQ(m.ref_count(parent[0]), 1);
  EXPECT_EQ(m.ref_count(parent[1]), 0);
  m.free(2);
  EXPECT_EQ(m.ref_count(parent[0]), 0);
  EXPECT_EQ(m.n_free(), 8);
  EXPECT_EQ(m.stats().blocks_used, 0);
}

TEST(KvBlockManager, ForkAtBlockBoundaryNeedsNoCopy) {
  kv_block_manager m({4, 8, true});
  const auto t = iota_tokens(8, 1);
  ASSERT_TRUE(m.allocate(1, t, 8));
  ASSERT_TRUE(m.fork(1, 2));
  std::vector<block_copy> copies;
  ASSERT_TRUE(m.append_slots(2, 8, 9, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(m.table(2).size(), 3u);
}

TEST(KvBlockManager, NoRoomLeavesEverythingUnchanged) {
  kv_block_manager m({4, 2, true});
  const auto t = iota_tokens(9, 1);
  EXPECT_FALSE(m.allocate(1, t, 9));  // needs 3 blocks
  EXPECT_FALSE(m.has(1));
  EXPECT_EQ(m.n_free(), 2);
  ASSERT_TRUE(m.allocate(1, t, 8));
  std::vector<block_copy> copies;
  EXPECT_FALSE(m.append_slots(1, 8, 9, copies));
  EXPECT_EQ(m.table(1).size(), 2u);
  EXPECT_TRUE(copies.empty());

  // Copy-on-write needs a block too.
  m.free(1);
  const auto p = iota_tokens(6, 50);
  ASSERT_TRUE(m.allocate(1, p, 6));
  ASSERT_TRUE(m.fork(1, 2));
  EXPECT_EQ(m.n_free(), 0);
  EXPECT_FALSE(m.append_slots(2, 6, 7, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(m, 2), table_of(m, 1));
  m.free(1);
  m.free(2);
  EXPECT_EQ(m.n_free(), 2);
}

TEST(KvBlockManager, SamePrefixComputedTwiceIsCachedOnce) {
  kv_block_manager m({4, 8, true});
  const auto t = iota_tokens(5, 1);
  ASSERT_TRUE(m.allocate(1, t, 5));
  ASSERT_TRUE(m.allocate(2, t, 5));  // before 1 registered anything: no hit
  EXPECT_NE(table_of(m, 1)[0], table_of(m, 2)[0]);
  m.cache_full_blocks(1, t, 5);
  m.cache_full_blocks(2, t, 5);
  EXPECT_TRUE(m.is_cached(table_of(m, 1)[0]));
  EXPECT_FALSE(m.is_cached(table_of(m, 2)[0]));
  m.free(1);
  m.free(2);
  EXPECT_EQ(m.stats().blocks_cached, 1);
  EXPECT_EQ(m.n_free(), 8);
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

// vLLM's cache_salt (issue 11): without it, /metrics' prefix-hit counter told one client whether
// another's prompt began with its guess. A salted prompt meets only blocks cached under its salt.
TEST(KvBlockManager, ASaltedPromptHitsOnlyBlocksCachedUnderTheSameSalt) {
  kv_block_manager m({16, 64, true});
  const auto prompt = iota_tokens(49, 100);  // three full blocks and one token
  const auto alice = kv_block_manager::salt_root("alice");
  const auto mallory = kv_block_manager::salt_root("mallory");
  ASSERT_TRUE(alice && mallory);
  EXPECT_FALSE(kv_block_manager::salt_root(""));
  EXPECT_NE(*alice, *mallory);

  ASSERT_TRUE(m.allocate(1, prompt, 49, alice));
  m.cache_full_blocks(1, prompt, 49);
  m.free(1);
  EXPECT_EQ(m.cached_prefix(prompt, alice), 48);
  EXPECT_EQ(m.cached_prefix(prompt, mallory), 0);
  EXPECT_EQ(m.cached_prefix(prompt), 0);  // unsalted requests do not see it either

  auto got = m.allocate(2, prompt, 49, mallory);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 0);
  m.cache_full_blocks(2, prompt, 49);
  m.free(2);
  got = m.allocate(3, prompt, 49, alice);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 48);  // alice's own blocks are still hers
  m.free(3);
  // An unsalted chain stays shared among unsalted requests.
  ASSERT_TRUE(m.allocate(4, prompt, 49));
  m.cache_full_blocks(4, prompt, 49);
  m.free(4);
  EXPECT_EQ(m.cached_prefix(prompt), 48);
}

}  // namespace
}  // namespace troupe
