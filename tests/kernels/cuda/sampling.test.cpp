// Argmax and top-k/top-p/min-p draws on the GPU against the CPU sampler (troupe::sampler), given
// the same logits and the same uniform draw: the sampler's first draw for a seed is the first
// uniform() of xoshiro256ss(seed).
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cuda/sampling.cuh"
#include "runtime/sampling/rng.hpp"
#include "runtime/sampling/sampler.hpp"
#include "tests/kernels/cpu/test_util.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe::cuda {
namespace {

using cpu::test::random_floats;
using test::device_vector;

int32_t cpu_choice(const sampling_params& p, std::vector<float> row) {
  sampler s(p);
  return s.sample(row).token;
}

TEST(CudaSampling, ArgmaxTakesTheLowestIdOfTiesAndNeverANan) {
  TROUPE_REQUIRE_GPU();
  const int64_t n_rows = 4, n_vocab = 5000;
  auto logits = random_floats(static_cast<size_t>(n_rows * n_vocab), 21, -10.0f, 10.0f);
  logits[0 * n_vocab + 300] = logits[0 * n_vocab + 4000] = 50.0f;                    // a tie
  logits[1 * n_vocab + 7] = std::numeric_limits<float>::quiet_NaN();                // NaN is not the max
  for (int64_t i = 0; i < n_vocab; ++i) logits[2 * n_vocab + i] = -1.0f;            // all equal
  logits[3 * n_vocab + n_vocab - 1] = 11.0f;                                         // the last id
  device_vector<float> d(logits);
  device_vector<int32_t> ids(n_rows);
  EXPECT_DEV_OK(argmax(d.get(), n_rows, n_vocab, ids.get(), nullptr));
  const auto got = ids.to_host();
  sampling_params greedy;
  greedy.temperature = 0.0f;
  for (int64_t r = 0; r < n_rows; ++r) {
    const std::vector<float> row(logits.begin() + r * n_vocab, logits.begin() + (r + 1) * n_vocab);
    EXPECT_EQ(got[r], cpu_choice(greedy, row)) << "row " << r;
  }
  EXPECT_EQ(got[0], 300);
  EXPECT_EQ(got[2], 0);
  EXPECT_EQ(got[3], n_vocab - 1);
}

TEST(CudaSampling, DrawsTheTokenTheCpuSamplerDrawsForTheSameUniform) {
  TROUPE_REQUIRE_GPU();
  const int64_t n_vocab = 1000, n_seeds = 40;
  struct config {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float lo, hi;  // logit range
  };
  // Top-p alone on logits within 5 of each other: the CPU's prefilter (weights >= 1e-4) keeps every
  // token, so both walk the same candidates.
  const config configs[] = {
      {1.0f, 0, 1.0f, 0.0f, -5.0f, 5.0f},   {0.7f, 0, 1.0f, 0.05f, -5.0f, 5.0f}, {1.0f, 40, 1.0f, 0.0f, -5.0f, 5.0f},
      {1.3f, 40, 0.9f, 0.0f, -5.0f, 5.0f},  {0.8f, 5, 0.5f, 0.1f, -5.0f, 5.0f},  {1.0f, 0, 0.9f, 0.0f, 0.0f, 5.0f},
      {1.0f, 0, 0.3f, 0.02f, 0.0f, 5.0f},   {0.0f, 10, 0.9f, 0.0f, -5.0f, 5.0f}, {1.0f, 2000, 0.95f, 0.0f, -5.0f, 5.0f},
  };
  uint32_t data_seed = 30;
  for (const config& c : configs) {
    const auto logits = random_floats(static_cast<size_t>(n_seeds * n_vocab), data_seed++, c.lo, c.hi);
    std::vector<sample_settings> settings;
    std::vector<int32_t> want;
    for (int64_t s = 0; s < n_seeds; ++s) {
      sampling_params p;
      p.temperature = c.temperature;
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      p.seed = static_cast<uint64_t>(1000 + s);
      want.push_back(cpu_choice(p, std::vector<float>(logits.begin() + s * n_vocab, logits.begin() + (s + 1) * n_vocab)));
      xoshiro256ss rng(*p.seed);
      settings.push_back({c.temperature, c.top_k, c.top_p, c.min_p, rng.uniform()});
    }
    device_vector<float> d(logits);
    device_vector<sample_settings> ds(settings);
    device_vector<int32_t> ids(static_cast<size_t>(n_seeds));
    EXPECT_DEV_OK(sample(d.get(), n_seeds, n_vocab, ds.get(), ids.get(), nullptr));
    EXPECT_EQ(ids.to_host(), want) << "temperature " << c.temperature << " top_k " << c.top_k << " top_p " << c.top_p
                                   << " min_p " << c.min_p;
  }
}

}  // namespace
}  // namespace troupe::cuda
