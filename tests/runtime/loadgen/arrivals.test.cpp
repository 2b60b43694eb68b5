// The arrival process: over many seeded samples the inter-arrival times have mean 1/rate and a
// coefficient of variation of 1 (Poisson) or 1/sqrt(burstiness) (gamma), and a seed fixes them.
#include "runtime/loadgen/arrivals.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace troupe::loadgen {
namespace {

struct interval_stats {
  double mean = 0.0, cv = 0.0;
};

interval_stats stats_of(const std::vector<double>& times) {
  std::vector<double> gaps;
  double prev = 0.0;
  for (double t : times) gaps.push_back(t - prev), prev = t;
  double mean = 0.0;
  for (double g : gaps) mean += g;
  mean /= static_cast<double>(gaps.size());
  double var = 0.0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= static_cast<double>(gaps.size());
  return {mean, std::sqrt(var) / mean};
}

TEST(Arrivals, PoissonHasTheMeanRateAndUnitCoefficientOfVariation) {
  auto times = arrival_times(200000, arrival_options{4.0, 1.0, 7});
  ASSERT_TRUE(times);
  const auto s = stats_of(*times);
  EXPECT_NEAR(s.mean, 0.25, 0.25 * 0.02);
  EXPECT_NEAR(s.cv, 1.0, 0.02);
  EXPECT_TRUE(std::is_sorted(times->begin(), times->end()));
  EXPECT_GT(times->front(), 0.0);  // the first request waits one interval too
}

TEST(Arrivals, GammaCoefficientOfVariationIsOneOverSqrtBurstiness) {
  for (double burstiness : {0.25, 0.5, 2.0, 4.0}) {
    auto times = arrival_times(200000, arrival_options{10.0, burstiness, 11});
    ASSERT_TRUE(times);
    const auto s = stats_of(*times);
    EXPECT_NEAR(s.mean, 0.1, 0.1 * 0.02) << "burstiness " << burstiness;
    const double cv = 1.0 / std::sqrt(burstiness);
    EXPECT_NEAR(s.cv, cv, cv * 0.03) << "burstiness " << burstiness;
  }
}

TEST(Arrivals, GammaSamplerHasTheMomentsOfItsShapeAndScale) {
  // mean k theta, variance k theta^2, for shapes below and above 1 (two code paths).
  xoshiro256ss rng(3);
  for (double shape : {0.3, 1.0, 3.5}) {
    const double scale = 2.0;
    double sum = 0.0, sum2 = 0.0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
      const double x = sample_gamma(rng, shape, scale);
      ASSERT_GT(x, 0.0);
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    EXPECT_NEAR(mean, shape * scale, shape * scale * 0.02) << "shape " << shape;
    EXPECT_NEAR(var, shape * scale * scale, shape * scale * scale * 0.05) << "shape " << shape;
  }
}

TEST(Arrivals, TheSeedFixesTheSchedule) {
  const auto a = arrival_times(1000, arrival_options{5.0, 0.7, 42});
  const auto b = arrival_times(1000, arrival_options{5.0, 0.7, 42});
  const auto c = arrival_times(1000, arrival_options{5.0, 0.7, 43});
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST(Arrivals, InfiniteRateSendsAllAtOnceAndInfiniteBurstinessIsRegular) {
  auto all = arrival_times(5, arrival_options{unlimited_rate, 1.0, 1});
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, std::vector<double>(5, 0.0));
  auto regular = arrival_times(4, arrival_options{2.0, std::numeric_limits<double>::infinity(), 1});
  ASSERT_TRUE(regular);
  EXPECT_EQ(*regular, (std::vector<double>{0.5, 1.0, 1.5, 2.0}));
}

TEST(Arrivals, NonPositiveRateOrBurstinessIsAnError) {
  EXPECT_FALSE(arrival_times(3, arrival_options{0.0, 1.0, 1}));
  EXPECT_FALSE(arrival_times(3, arrival_options{1.0, 0.0, 1}));
  EXPECT_EQ(arrival_times(3, arrival_options{-1.0, 1.0, 1}).error().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace troupe::loadgen
