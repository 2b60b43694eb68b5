// rms_norm, rope, silu_mul, add_inplace, kv_write and get_row against their reference versions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tests/kernels/cpu/test_util.hpp"

namespace troupe::cpu {
namespace {

using test::all_types;
using test::random_floats;
using test::test_weight;

// Relative error of a float result against a double-accumulated reference: a handful of ulps for
// the vectorised sums and the polynomial exp.
constexpr float rel_tol = 4e-6f;

void expect_near_rel(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float bound = tol * std::max(1e-3f, std::fabs(want[i]));
    if (!(std::fabs(got[i] - want[i]) <= bound) && ++failures < 5)
      ADD_FAILURE() << what << " i=" << i << " got " << got[i] << " want " << want[i];
  }
}

TEST(RmsNorm, MatchesReference) {
  thread_pool pool(2);
  for (int64_t dim : {1, 7, 64, 100, 2048}) {
    for (int64_t n_rows : {1, 3, 40}) {
      const auto x = random_floats(static_cast<size_t>(n_rows * dim), 1, -3.0f, 3.0f);
      const auto w = random_floats(static_cast<size_t>(dim), 2);
      std::vector<float> y(x.size()), y_ref(x.size());
      rms_norm(pool, x.data(), w.data(), n_rows, dim, 1e-5f, y.data());
      ref::rms_norm(x.data(), w.data(), n_rows, dim, 1e-5f, y_ref.data());
      expect_near_rel(y, y_ref, rel_tol, "rms_norm");
      // In place (y aliases x).
      auto inplace = x;
      rms_norm(pool, inplace.data(), w.data(), n_rows, dim, 1e-5f, inplace.data());
      EXPECT_EQ(0, std::memcmp(inplace.data(), y.data(), y.size() * sizeof(float)));
    }
  }
}

TEST(Rope, MatchesReferenceForBothStyles) {
  for (rope_style style : {rope_style::interleaved, rope_style::neox}) {
    for (int64_t head_dim : {2, 6, 64, 128}) {
      std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
      for (int64_t i = 0; i < head_dim / 2; ++i)
        inv_freq[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(head_dim));
      for (int64_t pos : {0, 1, 17, 4095}) {
        auto x = random_floats(static_cast<size_t>(5 * head_dim), 3);
        auto x_ref = x;
        rope(x.data(), 5, head_dim, pos, inv_freq.data(), style);
        ref::rope(x_ref.data(), 5, head_dim, pos, inv_freq.data(), style);
        // Same sin/cos and the same products and sums per element; only FMA contraction (which the
        // compiler may apply to either side) differs: within an ulp of |x0 c| + |x1 s| <= 2.
        for (size_t i = 0; i < x.size(); ++i)
          ASSERT_NEAR(x[i], x_ref[i], 4.8e-7f) << "style " << static_cast<int>(style) << " head_dim " << head_dim
                                    << " pos " << pos << " i " << i;
      }
    }
  }
}

TEST(SiluMul, MatchesReference) {
  thread_pool pool(2);
  for (int64_t n : {1, 9, 5632, 100000}) {
    const auto g = random_floats(static_cast<size_t>(n), 4, -20.0f, 20.0f);
    const auto u = random_floats(static_cast<size_t>(n), 5);
    std::vector<float> y(g.size()), y_ref(g.size());
    silu_mul(pool, g.data(), u.data(), n, y.data());
    ref::silu_mul(g.data(), u.data(), n, y_ref.data());
    expect_near_rel(y, y_ref, rel_tol, "silu_mul");
    auto inplace = g;  // out aliases gate
    silu_mul(pool, inplace.data(), u.data(), n, inplace.data());
    EXPECT_EQ(0, std::memcmp(inplace.data(), y.data(), y.size() * sizeof(float)));
  }
}

TEST(AddInplace, AddsElementwise) {
  thread_pool pool(2);
  for (int64_t n : {1, 13, 2048, 100003}) {
    auto x = random_floats(static_cast<size_t>(n), 6);
    const auto y = random_floats(static_cast<size_t>(n), 7);
    auto want = x;
    for (size_t i = 0; i < want.size(); ++i) want[i] += y[i];
    add_inplace(pool, x.data(), y.data(), n);
    EXPECT_EQ(0, std::memcmp(x.data(), want.data(), x.size() * sizeof(float)));
  }
}

TEST(KvWrite, WritesTheSlotThroughTheBlockTable) {
  const int block_size = 4, n_kv = 2, hd = 8, n_blocks = 5;
  const int64_t width = n_kv * hd;
  std::vector<float> k(static_cast<size_t>(n_blocks * block_size * width), 0.0f), v(k.size(), 0.0f);
  const kv_layer_view kv{k.data(), v.data(), block_size, n_kv, hd};
  const int32_t table[] = {3, 0, 4};
  for (int64_t pos = 0; pos < 12; ++pos) {
    std::vector<float> kt(static_cast<size_t>(width)), vt(kt.size());
    for (int64_t e = 0; e < width; ++e) {
      kt[e] = static_cast<float>(pos * 100 + e);
      vt[e] = -kt[e];
    }
    kv_write(kv, table, pos, kt.data(), vt.data());
  }
  for (int64_t pos = 0; pos < 12; ++pos) {
    const int64_t slot = table[pos / block_size] * block_size + pos % block_size;
    for (int64_t e = 0; e < width; ++e) {
      EXPECT_EQ(k[slot * width + e], static_cast<float>(pos * 100 + e));
      EXPECT_EQ(v[slot * width + e], -static_cast<float>(pos * 100 + e));
    }
  }
  // Block 1 and 2 are not in the table: untouched.
  for (int64_t i = block_size * width; i < 3 * block_size * width; ++i) EXPECT_EQ(k[i], 0.0f);
}

TEST(GetRow, EqualsReferenceForEveryType) {
  for (dtype t : all_types) {
    for (int64_t cols : {32, 96, 2048}) {
      test_weight w(t, 5, cols, 8);
      for (int64_t r = 0; r < 5; ++r) {
        std::vector<float> got(static_cast<size_t>(cols)), want(got.size());
        get_row(w.ref, r, got.data());
        ref::get_row(w.ref, r, want.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << to_string(t);
      }
    }
  }
}

}  // namespace
}  // namespace troupe::cpu
