// KV-page writes and paged attention on the GPU against the CPU: decode batches of sequences with
// very different lengths (the long ones split over the sequence), a prefill chunk that is causal
// within itself and reads earlier cached blocks, and grouped-query heads from MHA to MQA.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/kv_write.cuh"
#include "kernels/cuda/paged_attention.cuh"
#include "tests/kernels/cpu/test_util.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe::cuda {
namespace {

using cpu::test::random_floats;
using test::device_vector;

/// One query token: its sequence's block table and its position.
struct query {
  std::vector<int32_t> table;
  int32_t pos;
};

/// Random tables of distinct blocks: each sequence gets the blocks its longest query needs.
std::vector<int32_t> random_table(std::mt19937& rng, std::vector<int32_t>& free_blocks, int32_t n_ctx, int block_size) {
  std::vector<int32_t> table;
  for (int32_t p = 0; p < n_ctx; p += block_size) {
    std::uniform_int_distribution<size_t> pick(0, free_blocks.size() - 1);
    const size_t i = pick(rng);
    table.push_back(free_blocks[i]);
    free_blocks.erase(free_blocks.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return table;
}

/// Flattens the queries' tables and positions as the model runner does.
struct flat_batch {
  std::vector<int32_t> pos, offset, tables;
  int32_t max_ctx = 0;
  explicit flat_batch(const std::vector<query>& qs) {
    for (const query& q : qs) {
      pos.push_back(q.pos);
      offset.push_back(static_cast<int32_t>(tables.size()));
      tables.insert(tables.end(), q.table.begin(), q.table.end());
      max_ctx = std::max(max_ctx, q.pos + 1);
    }
  }
};

void expect_attention_matches(int n_heads, int n_kv_heads, int head_dim, const std::vector<query>& qs,
                              const std::vector<float>& k_pool, const std::vector<float>& v_pool, int block_size,
                              const char* what) {
  const auto n = static_cast<int64_t>(qs.size());
  const int64_t q_width = static_cast<int64_t>(n_heads) * head_dim;
  const auto q = random_floats(static_cast<size_t>(n * q_width), 11, -2.0f, 2.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

  std::vector<float> want(q.size()), k_host = k_pool, v_host = v_pool;
  const cpu::kv_layer_view host_kv{k_host.data(), v_host.data(), block_size, n_kv_heads, head_dim};
  std::vector<cpu::attn_query> refs;
  for (int64_t i = 0; i < n; ++i)
    refs.push_back({q.data() + i * q_width, want.data() + i * q_width, qs[i].table.data(), qs[i].pos + 1});
  cpu::ref::paged_attention(host_kv, refs.data(), n, n_heads, scale);

  const flat_batch fb(qs);
  device_vector<float> dk(k_pool), dv(v_pool), dq(q), dout(q.size());
  device_vector<int32_t> dpos(fb.pos), doff(fb.offset), dtables(fb.tables);
  const size_t ws_bytes = paged_attention_workspace_bytes(head_dim);
  device_vector<uint8_t> ws(ws_bytes);
  const cpu::kv_layer_view kv{dk.get(), dv.get(), block_size, n_kv_heads, head_dim};
  const token_pages pages{dpos.get(), doff.get(), dtables.get(), n};
  EXPECT_DEV_OK(paged_attention(kv, pages, dq.get(), dout.get(), n_heads, scale, fb.max_ctx, ws.get(), ws_bytes, nullptr));
  const auto got = dout.to_host();
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::fabs(got[i] - want[i]) > 2e-5f && ++failures < 5)
      ADD_FAILURE() << what << " heads " << n_heads << "/" << n_kv_heads << " head_dim " << head_dim << " query "
                    << i / q_width << " element " << i % q_width << ": gpu " << got[i] << " cpu " << want[i];
  }
}

TEST(CudaPagedAttention, MatchesTheReferenceForDecodeAndPrefillWithGroupedHeads) {
  TROUPE_REQUIRE_GPU();
  const int block_size = 16;
  const int n_blocks = 700;
  struct shape {
    int n_heads, n_kv_heads, head_dim;
  };
  for (const shape& s : {shape{8, 4, 8}, shape{4, 4, 64}, shape{32, 8, 128}, shape{8, 1, 256}, shape{6, 2, 80}}) {
    const int64_t width = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
    const auto k_pool = random_floats(static_cast<size_t>(n_blocks * block_size * width), 12);
    const auto v_pool = random_floats(k_pool.size(), 13);
    std::mt19937 rng(14);
    std::vector<int32_t> free_blocks(n_blocks);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);

    // Decode: one token per sequence at the end of contexts from 1 to over 4,000 positions.
    std::vector<query> decode;
    for (int32_t n_ctx : {1, 17, 300, 1500, 4100})
      decode.push_back({random_table(rng, free_blocks, n_ctx, block_size), n_ctx - 1});
    expect_attention_matches(s.n_heads, s.n_kv_heads, s.head_dim, decode, k_pool, v_pool, block_size, "decode batch");
    // A single long sequence: split into many parts over the sequence.
    expect_attention_matches(s.n_heads, s.n_kv_heads, s.head_dim, {decode.back()}, k_pool, v_pool, block_size,
                             "single long decode");

    // Prefill: a 64-token chunk at positions 100..163 of one sequence.
    const auto table = random_table(rng, free_blocks, 164, block_size);
    std::vector<query> chunk;
    for (int32_t p = 100; p < 164; ++p) chunk.push_back({table, p});
    expect_attention_matches(s.n_heads, s.n_kv_heads, s.head_dim, chunk, k_pool, v_pool, block_size, "prefill chunk");
  }
}

TEST(CudaPagedAttention, RefusesAWorkspaceTooSmallForTheSplit) {
  TROUPE_REQUIRE_GPU();
  device_vector<float> buf(1 << 16);
  device_vector<int32_t> meta(std::vector<int32_t>{4095, 0, 0});
  const cpu::kv_layer_view kv{buf.get(), buf.get(), 16, 1, 64};
  const token_pages pages{meta.get(), meta.get() + 1, meta.get() + 2, 1};
  // One query with 4,096 positions splits; without a workspace that must fail before any launch.
  const dev_status s = paged_attention(kv, pages, buf.get(), buf.get(), 1, 0.125f, 4096, nullptr, 0, nullptr);
  EXPECT_FALSE(s.ok());
}

TEST(CudaKvWrite, WritesEachTokenIntoItsSlotAsTheCpu) {
  TROUPE_REQUIRE_GPU();
  const int block_size = 16, n_kv_heads = 2, head_dim = 8, n_blocks = 10;
  const int64_t width = n_kv_heads * head_dim;
  // Sequence A: positions 0..20 in blocks {3, 7}; sequence B: position 5 in block {9}.
  const std::vector<int32_t> table_a = {3, 7}, table_b = {9};
  std::vector<int32_t> pos, offset, tables = {3, 7, 9};
  for (int32_t p = 0; p <= 20; ++p) {
    pos.push_back(p);
    offset.push_back(0);
  }
  pos.push_back(5);
  offset.push_back(2);
  const auto n = static_cast<int64_t>(pos.size());
  const auto k = random_floats(static_cast<size_t>(n * width), 15), v = random_floats(k.size(), 16);

  const size_t pool = static_cast<size_t>(n_blocks * block_size * width);
  std::vector<float> want_k(pool, 0.0f), want_v(pool, 0.0f);
  const cpu::kv_layer_view host{want_k.data(), want_v.data(), block_size, n_kv_heads, head_dim};
  for (int64_t t = 0; t < n; ++t)
    cpu::kv_write(host, t < 21 ? table_a.data() : table_b.data(), pos[t], k.data() + t * width, v.data() + t * width);

  device_vector<float> dk_pool(std::vector<float>(pool, 0.0f)), dv_pool(std::vector<float>(pool, 0.0f));
  device_vector<float> dk(k), dv(v);
  device_vector<int32_t> dpos(pos), doff(offset), dtables(tables);
  const cpu::kv_layer_view kv{dk_pool.get(), dv_pool.get(), block_size, n_kv_heads, head_dim};
  EXPECT_DEV_OK(kv_write(kv, token_pages{dpos.get(), doff.get(), dtables.get(), n}, dk.get(), dv.get(), nullptr));
  EXPECT_EQ(dk_pool.to_host(), want_k);
  EXPECT_EQ(dv_pool.to_host(), want_v);
}

}  // namespace
}  // namespace troupe::cuda
