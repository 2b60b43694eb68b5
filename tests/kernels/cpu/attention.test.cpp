// Paged attention against contiguous attention over the same keys and values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tests/kernels/cpu/test_util.hpp"

namespace troupe::cpu {
namespace {

using test::random_floats;

struct attn_case {
  int head_dim;
  int n_kv_heads;
  int group;
};

// Outputs are convex combinations of V rows (|v| <= 1); the float score, exp and accumulation
// errors of the fast path stay far below 1e-5 for these context lengths.
constexpr float abs_tol = 1e-5f;

TEST(PagedAttention, EqualsContiguousAttention) {
  thread_pool pool1(1), pool2(2), pool3(3);
  const int block_size = 16, n_blocks = 40;
  const int32_t ctx_lens[] = {1, 15, 16, 17, 33, 100, 250};
  std::mt19937 rng(42);
  for (attn_case c : {attn_case{64, 1, 8}, attn_case{64, 4, 1}, attn_case{128, 2, 2}, attn_case{128, 2, 4},
                      attn_case{64, 2, 8}}) {
    const int n_heads = c.n_kv_heads * c.group;
    const int64_t width = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
    auto k = random_floats(static_cast<size_t>(n_blocks * block_size * width), 1);
    auto v = random_floats(k.size(), 2);
    const kv_layer_view kv{k.data(), v.data(), block_size, c.n_kv_heads, c.head_dim};
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

    const size_t nq = std::size(ctx_lens);
    std::vector<std::vector<int32_t>> tables(nq);
    std::vector<std::vector<float>> qs(nq), outs(nq);
    std::vector<attn_query> queries(nq);
    for (size_t i = 0; i < nq; ++i) {
      // Each query gets the blocks in a shuffled order, so the table is not the identity.
      tables[i].resize(n_blocks);
      std::iota(tables[i].begin(), tables[i].end(), 0);
      std::shuffle(tables[i].begin(), tables[i].end(), rng);
      qs[i] = random_floats(static_cast<size_t>(n_heads * c.head_dim), 100 + static_cast<uint32_t>(i), -2.0f, 2.0f);
      outs[i].assign(qs[i].size(), NAN);
      queries[i] = attn_query{qs[i].data(), outs[i].data(), tables[i].data(), ctx_lens[i]};
    }
    for (thread_pool* pool : {&pool1, &pool2, &pool3}) {
      for (int64_t n_queries : {int64_t{1}, static_cast<int64_t>(nq)}) {
        paged_attention(*pool, kv, queries.data(), n_queries, n_heads, scale);
        for (int64_t i = 0; i < n_queries; ++i) {
          const int32_t n_ctx = ctx_lens[i];
          std::vector<float> keys(static_cast<size_t>(n_ctx * width)), values(keys.size());
          for (int32_t p = 0; p < n_ctx; ++p) {
            const int64_t slot = static_cast<int64_t>(tables[i][p / block_size]) * block_size + p % block_size;
            std::copy_n(k.data() + slot * width, width, keys.data() + p * width);
            std::copy_n(v.data() + slot * width, width, values.data() + p * width);
          }
          std::vector<float> want(qs[i].size());
          ref::contiguous_attention(qs[i].data(), keys.data(), values.data(), n_ctx, n_heads, c.n_kv_heads,
                                    c.head_dim, scale, want.data());
          for (size_t e = 0; e < want.size(); ++e) {
            ASSERT_NEAR(outs[i][e], want[e], abs_tol)
                << "head_dim " << c.head_dim << " kv_heads " << c.n_kv_heads << " group " << c.group << " query "
                << i << " n_ctx " << n_ctx << " element " << e << " threads " << pool->size();
          }
        }
      }
    }
  }
}

TEST(PagedAttention, SingleContextPositionReturnsItsValue) {
  // With one position the softmax weight is exactly 1: the output is V itself.
  thread_pool pool(2);
  const int hd = 64, n_kv = 2, n_heads = 4;
  auto k = random_floats(static_cast<size_t>(4 * 16 * n_kv * hd), 5);
  auto v = random_floats(k.size(), 6);
  const kv_layer_view kv{k.data(), v.data(), 16, n_kv, hd};
  const int32_t table[] = {2};
  auto q = random_floats(static_cast<size_t>(n_heads * hd), 7);
  std::vector<float> out(q.size());
  const attn_query query{q.data(), out.data(), table, 1};
  paged_attention(pool, kv, &query, 1, n_heads, 0.125f);
  for (int h = 0; h < n_heads; ++h)
    for (int d = 0; d < hd; ++d) EXPECT_FLOAT_EQ(out[h * hd + d], v[(2 * 16 * n_kv + h / 2) * hd + d]);
}

}  // namespace
}  // namespace troupe::cpu
