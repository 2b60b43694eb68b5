// RMSNorm, RoPE (both pairings), the SwiGLU gate and the residual/bias adds on the GPU against the
// CPU reference ops.
#include <cmath>
#include <vector>

#include "kernels/cuda/add.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/silu_mul.cuh"
#include "tests/kernels/cpu/test_util.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe::cuda {
namespace {

using cpu::test::random_floats;
using test::device_vector;

TEST(CudaRmsNorm, MatchesTheReferenceInPlaceAndNot) {
  TROUPE_REQUIRE_GPU();
  const int64_t n_rows = 5;
  for (int64_t dim : {1, 7, 64, 1000, 4096}) {
    const auto x = random_floats(static_cast<size_t>(n_rows * dim), 3, -2.0f, 2.0f);
    const auto w = random_floats(static_cast<size_t>(dim), 4, 0.5f, 1.5f);
    std::vector<float> want(x.size());
    cpu::ref::rms_norm(x.data(), w.data(), n_rows, dim, 1e-5f, want.data());
    device_vector<float> dx(x), dw(w), dy(x.size());
    EXPECT_DEV_OK(rms_norm(dx.get(), dw.get(), n_rows, dim, 1e-5f, dy.get(), nullptr));
    EXPECT_DEV_OK(rms_norm(dx.get(), dw.get(), n_rows, dim, 1e-5f, dx.get(), nullptr));  // y aliases x
    for (const auto& got : {dy.to_host(), dx.to_host()}) {
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-6) << "dim " << dim << " element " << i;
    }
  }
}

TEST(CudaRope, MatchesTheReferenceForBothPairingsAndFarPositions) {
  TROUPE_REQUIRE_GPU();
  const std::vector<int32_t> pos = {0, 1, 17, 4000};
  const int64_t n_tokens = static_cast<int64_t>(pos.size()), n_heads = 3;
  for (int64_t head_dim : {8, 64, 128}) {
    std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
    for (int64_t i = 0; i < head_dim / 2; ++i)
      inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / head_dim));
    for (cpu::rope_style style : {cpu::rope_style::interleaved, cpu::rope_style::neox}) {
      const auto x = random_floats(static_cast<size_t>(n_tokens * n_heads * head_dim), 5);
      std::vector<float> want = x;
      for (int64_t t = 0; t < n_tokens; ++t)
        cpu::ref::rope(want.data() + t * n_heads * head_dim, n_heads, head_dim, pos[t], inv_freq.data(), style);
      device_vector<float> dx(x), dfreq(inv_freq);
      device_vector<int32_t> dpos(pos);
      EXPECT_DEV_OK(rope(dx.get(), n_tokens, n_heads, head_dim, dpos.get(), dfreq.get(), style, nullptr));
      const auto got = dx.to_host();
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 4e-6) << "head_dim " << head_dim << " neox " << (style == cpu::rope_style::neox)
                                           << " element " << i;
    }
  }
}

TEST(CudaSiluMul, MatchesTheReferenceAndMayWriteOverTheGate) {
  TROUPE_REQUIRE_GPU();
  const int64_t n = 1031;
  const auto gate = random_floats(static_cast<size_t>(n), 6, -8.0f, 8.0f), up = random_floats(static_cast<size_t>(n), 7);
  std::vector<float> want(gate.size());
  cpu::ref::silu_mul(gate.data(), up.data(), n, want.data());
  device_vector<float> dg(gate), du(up);
  EXPECT_DEV_OK(silu_mul(dg.get(), du.get(), n, dg.get(), nullptr));
  const auto got = dg.to_host();
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-7) << i;
}

TEST(CudaAdd, ResidualAndBiasAddsAreExact) {
  TROUPE_REQUIRE_GPU();
  const int64_t rows = 7, dim = 129;
  const auto x = random_floats(static_cast<size_t>(rows * dim), 8), y = random_floats(x.size(), 9);
  const auto bias = random_floats(static_cast<size_t>(dim), 10);
  device_vector<float> dx(x), dy(y), db(bias);
  EXPECT_DEV_OK(add_inplace(dx.get(), dy.get(), rows * dim, nullptr));
  EXPECT_DEV_OK(add_bias(dx.get(), db.get(), rows, dim, nullptr));
  const auto got = dx.to_host();
  for (int64_t i = 0; i < rows * dim; ++i) ASSERT_EQ(got[i], (x[i] + y[i]) + bias[i % dim]) << i;
}

}  // namespace
}  // namespace troupe::cuda
