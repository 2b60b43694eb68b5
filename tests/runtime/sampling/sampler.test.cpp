#include "runtime/sampling/sampler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

namespace troupe {
namespace {

// Logits whose softmax is exactly probs (up to float rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p;
  double sum = 0.0;
  for (float l : logits) sum += std::exp((l - mx) / temperature);
  for (float l : logits) p.push_back(std::exp((l - mx) / temperature) / sum);
  return p;
}

// Draws n tokens (a fresh copy of the logits each time) and counts them.
std::map<int32_t, int> draw_counts(sampler& s, const std::vector<float>& logits, int n) {
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) {
    auto row = logits;
    ++counts[s.sample(row).token];
  }
  return counts;
}

sampling_params seeded(uint64_t seed) {
  sampling_params p;
  p.seed = seed;
  return p;
}

std::vector<float> pseudo_random_logits(size_t n, uint64_t seed, double scale) {
  xoshiro256ss rng(seed);
  std::vector<float> out(n);
  for (auto& l : out) l = static_cast<float>((rng.uniform() * 2.0 - 1.0) * scale);
  return out;
}

// ---- RNG ----------------------------------------------------------------------------------------

TEST(Rng, SplitmixMatchesTheReferenceOutputs) {
  uint64_t state = 0;
  EXPECT_EQ(splitmix64_next(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(splitmix64_next(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(splitmix64_next(state), 0x06c45d188009454fULL);
}

TEST(Rng, XoshiroMatchesTheReferenceOutputs) {
  xoshiro256ss from_state(1, 2, 3, 4);
  EXPECT_EQ(from_state.next(), 0x2d00ULL);
  EXPECT_EQ(from_state.next(), 0x0ULL);
  EXPECT_EQ(from_state.next(), 0x5a007080ULL);
  EXPECT_EQ(from_state.next(), 0x10e0000000009d80ULL);
  xoshiro256ss from_seed(42);  // state = four splitmix64 outputs of 42
  EXPECT_EQ(from_seed.next(), 0x15780b2e0c2ec716ULL);
  EXPECT_EQ(from_seed.next(), 0x6104d9866d113a7eULL);
  EXPECT_EQ(from_seed.next(), 0xae17533239e499a1ULL);
}

TEST(Rng, UniformStaysInHalfOpenUnitInterval) {
  xoshiro256ss rng(1);
  double sum = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

// ---- validate -----------------------------------------------------------------------------------

TEST(SamplingParams, DefaultsAreValid) { EXPECT_TRUE(sampling_params{}.validate()); }

TEST(SamplingParams, ValidateNamesTheBadField) {
  auto expect_bad = [](sampling_params p, const std::string& field) {
    auto st = p.validate();
    ASSERT_FALSE(st) << field;
    EXPECT_EQ(st.error().code(), errc::invalid_argument);
    EXPECT_NE(st.error().message().find(field), std::string::npos) << st.error().message();
  };
  sampling_params p;
  p.temperature = -0.1f;
  expect_bad(p, "temperature");
  p = {};
  p.temperature = std::numeric_limits<float>::infinity();
  expect_bad(p, "temperature");
  p = {};
  p.temperature = std::nanf("");
  expect_bad(p, "temperature");
  p = {};
  p.top_p = 0.0f;
  expect_bad(p, "top_p");
  p = {};
  p.top_p = 1.5f;
  expect_bad(p, "top_p");
  p = {};
  p.min_p = -0.1f;
  expect_bad(p, "min_p");
  p = {};
  p.min_p = 1.1f;
  expect_bad(p, "min_p");
  p = {};
  p.repetition_penalty = 0.0f;
  expect_bad(p, "repetition_penalty");
  p = {};
  p.presence_penalty = 2.5f;
  expect_bad(p, "presence_penalty");
  p = {};
  p.frequency_penalty = -3.0f;
  expect_bad(p, "frequency_penalty");
  p = {};
  p.logprobs = -1;
  expect_bad(p, "logprobs");
  p = {};
  p.stop_token_ids = {2, -5};
  expect_bad(p, "stop_token_ids");
}

TEST(SamplingParams, ValidateAcceptsBoundaryValues) {
  sampling_params p;
  p.temperature = 0.0f;
  p.top_k = -1;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.repetition_penalty = 0.5f;
  EXPECT_TRUE(p.validate());
}

// ---- greedy -------------------------------------------------------------------------------------

TEST(Sampler, GreedyPicksArgmax) {
  sampling_params p;
  p.temperature = 0.0f;
  sampler s(p);
  std::vector<float> logits = {0.1f, 3.0f, -2.0f, 2.9f};
  EXPECT_EQ(s.sample(logits).token, 1);
  auto big = pseudo_random_logits(32000, 5, 10.0);
  const auto expected = std::max_element(big.begin(), big.end()) - big.begin();
  EXPECT_EQ(s.sample(big).token, expected);
}

TEST(Sampler, GreedyTiesGoToTheLowestId) {
  sampling_params p;
  p.temperature = 0.0f;
  sampler s(p);
  std::vector<float> logits = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
  EXPECT_EQ(s.sample(logits).token, 1);
}

TEST(Sampler, GreedyIgnoresTopKTopPMinP) {
  sampling_params p;
  p.temperature = 0.0f;
  p.top_k = 2;
  p.top_p = 0.1f;
  p.min_p = 0.9f;
  p.seed = 3;
  sampler s(p);
  const std::vector<float> logits = {0.5f, 0.4f, 0.6f, 0.59f};
  auto counts = draw_counts(s, logits, 50);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, 2);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  sampling_params p = seeded(11);
  p.top_k = 1;
  p.temperature = 1.5f;
  sampler s(p);
  for (int i = 0; i < 20; ++i) {
    auto logits = pseudo_random_logits(1000, 100 + i, 3.0);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(s.sample(logits).token, expected);
  }
}

// ---- reproducibility ----------------------------------------------------------------------------

TEST(Sampler, SameSeedReproducesExactly) {
  const auto logits = pseudo_random_logits(500, 9, 1.0);
  for (auto params : {seeded(123), [] { auto p = seeded(123); p.top_k = 50; return p; }(),
                      [] { auto p = seeded(123); p.top_p = 0.8f; p.min_p = 0.05f; return p; }()}) {
    sampler a(params), b(params);
    for (int i = 0; i < 200; ++i) {
      auto ra = logits, rb = logits;
      ASSERT_EQ(a.sample(ra).token, b.sample(rb).token) << "draw " << i;
    }
  }
}

TEST(Sampler, DifferentSeedsDiffer) {
  const auto logits = pseudo_random_logits(500, 9, 0.5);
  sampler a(seeded(1)), b(seeded(2)), c(sampling_params{}), d(sampling_params{});
  int same_ab = 0, same_cd = 0;
  for (int i = 0; i < 100; ++i) {
    auto r1 = logits, r2 = logits, r3 = logits, r4 = logits;
    same_ab += a.sample(r1).token == b.sample(r2).token;
    same_cd += c.sample(r3).token == d.sample(r4).token;  // unseeded: random seeds
  }
  EXPECT_LT(same_ab, 20);
  EXPECT_LT(same_cd, 20);
}

// The expected streams come from an independent Python model of the specified algorithm
// (splitmix64 + xoshiro256**, top 53 bits, walk in id order / in sorted order): they pin the
// stream so that a seed means the same tokens on every platform and in every later build.
TEST(Sampler, SeededStreamMatchesTheSpecifiedAlgorithm) {
  const std::vector<float> logits = {0.3f, -0.2f, 1.1f, 0.7f, 0.0f, 0.9f, -1.0f, 0.5f};
  {
    sampling_params p = seeded(42);
    p.temperature = 0.8f;
    sampler s(p);
    const std::vector<int32_t> expected = {0, 2, 5, 7, 7, 5, 5, 5, 5, 4, 5, 2,
                                           5, 2, 5, 7, 4, 5, 5, 5, 0, 2, 3, 4};
    for (size_t i = 0; i < expected.size(); ++i) {
      auto row = logits;
      EXPECT_EQ(s.sample(row).token, expected[i]) << "draw " << i;
    }
  }
  {
    sampling_params p = seeded(7);
    p.temperature = 1.3f;
    p.top_k = 4;
    sampler s(p);
    const std::vector<int32_t> expected = {3, 2, 7, 7, 7, 7, 2, 2, 5, 2, 5, 3,
                                           7, 7, 5, 5, 2, 5, 2, 2, 2, 3, 3, 2};
    for (size_t i = 0; i < expected.size(); ++i) {
      auto row = logits;
      EXPECT_EQ(s.sample(row).token, expected[i]) << "draw " << i;
    }
  }
}

// ---- distribution -------------------------------------------------------------------------------

TEST(Sampler, TemperatureFrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f};
  for (float temperature : {0.7f, 1.0f, 1.8f}) {
    sampling_params p = seeded(2024);
    p.temperature = temperature;
    sampler s(p);
    constexpr int n = 200000;
    auto counts = draw_counts(s, logits, n);
    const auto probs = softmax(logits, temperature);
    for (size_t i = 0; i < logits.size(); ++i) {
      // ~5 standard deviations of a frequency over 200k draws.
      EXPECT_NEAR(counts[static_cast<int32_t>(i)] / double(n), probs[i], 0.005)
          << "token " << i << " at temperature " << temperature;
    }
  }
}

TEST(Sampler, TopKSamplesTheRenormalisedTopK) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f};
  sampling_params p = seeded(5);
  p.top_k = 3;
  p.temperature = 1.2f;
  sampler s(p);
  constexpr int n = 100000;
  auto counts = draw_counts(s, logits, n);
  const std::vector<float> top3 = {2.0f, 1.5f, 1.0f};  // ids 3, 5, 0
  const auto probs = softmax(top3, 1.2);
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_NEAR(counts[3] / double(n), probs[0], 0.006);
  EXPECT_NEAR(counts[5] / double(n), probs[1], 0.006);
  EXPECT_NEAR(counts[0] / double(n), probs[2], 0.006);
}

TEST(Sampler, TopKLargerThanVocabIsOff) {
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f};
  sampling_params p = seeded(5);
  p.top_k = 10;
  sampler s(p);
  EXPECT_EQ(draw_counts(s, logits, 3000).size(), 3u);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  // Probabilities by id: 0.15, 0.5, 0.1, 0.25. Sorted: 0.5 (id 1), 0.25 (id 3), 0.15 (id 0), 0.1.
  const auto logits = logits_of({0.15, 0.5, 0.1, 0.25});
  struct tc {
    float top_p;
    std::set<int32_t> kept;
  };
  for (const auto& c : {tc{0.4f, {1}}, tc{0.6f, {1, 3}}, tc{0.7f, {1, 3}}, tc{0.8f, {1, 3, 0}},
                        tc{0.95f, {1, 3, 0, 2}}}) {
    sampling_params p = seeded(77);
    p.top_p = c.top_p;
    sampler s(p);
    auto counts = draw_counts(s, logits, 20000);
    std::set<int32_t> seen;
    for (auto [id, count] : counts) seen.insert(id);
    EXPECT_EQ(seen, c.kept) << "top_p " << c.top_p;
    if (c.top_p == 0.7f) {  // renormalised over {0.5, 0.25}
      EXPECT_NEAR(counts[1] / 20000.0, 2.0 / 3.0, 0.02);
    }
  }
}

TEST(Sampler, TopPOnALargeVocabSortsPastTheFirstChunk) {
  // Nearly flat logits: the top-p set holds hundreds of tokens, more than the first sorted chunk.
  const auto logits = pseudo_random_logits(1000, 31, 0.3);
  const float top_p = 0.9f;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const auto probs = softmax(logits);
  std::set<int32_t> kept;
  double cum = 0.0;
  for (int32_t id : order) {
    if (!kept.empty() && cum >= top_p) break;
    kept.insert(id);
    cum += probs[id];
  }
  ASSERT_GT(kept.size(), 200u);
  sampling_params p = seeded(8);
  p.top_p = top_p;
  sampler s(p);
  auto counts = draw_counts(s, logits, 20000);
  for (auto [id, count] : counts) EXPECT_TRUE(kept.count(id)) << "token " << id << " outside top-p";
  // The least likely kept token is still drawn (expected ~15 times).
  EXPECT_GT(counts[order[kept.size() - 1]], 0);
}

TEST(Sampler, TopPAppliesAfterTopK) {
  // Probabilities: 0.4, 0.3, 0.2, 0.1. top_k = 2 renormalises to 4/7, 3/7; top_p = 0.5 then
  // keeps only the first (4/7 >= 0.5), although 0.4 alone would not reach 0.5 over the full set.
  const auto logits = logits_of({0.4, 0.3, 0.2, 0.1});
  sampling_params p = seeded(12);
  p.top_k = 2;
  p.top_p = 0.5f;
  sampler s(p);
  auto counts = draw_counts(s, logits, 2000);
  EXPECT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0], 2000);
}

TEST(Sampler, MinPDropsTokensBelowTheScaledMax) {
  // p_max = 0.5; min_p = 0.25 keeps p >= 0.125: ids 0, 1, 2 (0.5, 0.3, 0.15), not 3 (0.05).
  const auto logits = logits_of({0.5, 0.3, 0.15, 0.05});
  {
    sampling_params p = seeded(4);
    p.min_p = 0.25f;
    sampler s(p);
    auto counts = draw_counts(s, logits, 40000);
    EXPECT_EQ(counts.size(), 3u);
    EXPECT_EQ(counts.count(3), 0u);
    EXPECT_NEAR(counts[0] / 40000.0, 0.5 / 0.95, 0.015);
  }
  {  // through the sorted path (top-k on) as well: min_p = 0.5 keeps p >= 0.25
    sampling_params p = seeded(4);
    p.min_p = 0.5f;
    p.top_k = 3;
    sampler s(p);
    auto counts = draw_counts(s, logits, 20000);
    EXPECT_EQ(counts.size(), 2u);
    EXPECT_EQ(counts.count(2), 0u);
  }
  {  // min_p = 1 keeps only the max
    sampling_params p = seeded(4);
    p.min_p = 1.0f;
    sampler s(p);
    auto counts = draw_counts(s, logits, 1000);
    EXPECT_EQ(counts.size(), 1u);
    EXPECT_EQ(counts[0], 1000);
  }
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> logits = {ninf, 0.0f, std::nanf(""), 0.0f};
  sampler s(seeded(1));
  auto counts = draw_counts(s, logits, 2000);
  EXPECT_EQ(counts.count(0), 0u);
  EXPECT_EQ(counts.count(2), 0u);
  std::vector<float> all_masked = {ninf, ninf};
  EXPECT_EQ(s.sample(all_masked).token, 0);
  std::vector<float> empty;
  EXPECT_EQ(s.sample(empty).token, -1);
}

// ---- penalties ----------------------------------------------------------------------------------

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  const std::vector<int32_t> prompt = {1, 2, 2};
  sampler s(p, prompt);
  std::vector<float> logits = {1.0f, 3.0f, -1.0f, 0.5f};
  auto r = s.sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], 1.5f);   // 3 / 2
  EXPECT_FLOAT_EQ(logits[2], -2.0f);  // -1 * 2, once although seen twice
  EXPECT_FLOAT_EQ(logits[3], 0.5f);
  EXPECT_EQ(r.token, 1);  // 1.5 is still the max
  // The sampled token stays penalised: 0 (2.0) now wins over 1 (1.5).
  std::vector<float> next = {2.0f, 3.0f, -1.0f, 0.5f};
  EXPECT_EQ(s.sample(next).token, 0);
  std::vector<float> third = {1.2f, 1.0f, 0.0f, 0.0f};
  s.accept(3);
  s.sample(third);
  EXPECT_FLOAT_EQ(third[0], 0.6f);  // sampled at step 2
  EXPECT_FLOAT_EQ(third[1], 0.5f);
  EXPECT_FLOAT_EQ(third[3], 0.0f);  // forced token, penalised (0 stays 0)
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountGeneratedTokensOnly) {
  sampling_params p;
  p.temperature = 0.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  const std::vector<int32_t> prompt = {0};  // prompt tokens do not count for these two
  sampler s(p, prompt);
  s.accept(2);
  s.accept(2);
  s.accept(3);
  std::vector<float> logits = {1.0f, 0.0f, 2.0f, 1.0f};
  s.sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], 0.0f);
  EXPECT_FLOAT_EQ(logits[2], 2.0f - 0.5f - 2 * 0.25f);
  EXPECT_FLOAT_EQ(logits[3], 1.0f - 0.5f - 0.25f);
}

TEST(Sampler, PenaltiesCombineRepetitionFirst) {
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  sampler s(p);
  s.accept(1);
  std::vector<float> logits = {0.0f, 4.0f};
  s.sample(logits);
  EXPECT_FLOAT_EQ(logits[1], 4.0f / 2.0f - 1.0f);
}

TEST(Sampler, PenaltiesIgnoreIdsOutsideTheVocabulary) {
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;
  p.presence_penalty = 1.0f;
  const std::vector<int32_t> prompt = {-1, 100};
  sampler s(p, prompt);
  s.accept(50);
  std::vector<float> logits = {1.0f, 2.0f};
  EXPECT_EQ(s.sample(logits).token, 1);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
}

// ---- log-probabilities and stop ids -------------------------------------------------------------

TEST(Sampler, LogprobsMatchLogSoftmaxSortedDescending) {
  const auto logits = pseudo_random_logits(300, 17, 4.0);
  const auto probs = softmax(logits);
  sampling_params p = seeded(3);
  p.logprobs = 5;
  sampler s(p);
  auto row = logits;
  auto r = s.sample(row);
  ASSERT_EQ(r.top.size(), 5u);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r.top[i].id, order[i]);
    EXPECT_NEAR(r.top[i].logprob, std::log(probs[order[i]]), 1e-4);
    if (i > 0) {
      EXPECT_GE(r.top[i - 1].logprob, r.top[i].logprob);
    }
  }
  EXPECT_NEAR(r.logprob, std::log(probs[r.token]), 1e-4);
}

TEST(Sampler, TheChosenTokensLogprobAloneIsComputedOnlyWhenAskedFor) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f};
  const auto probs = softmax(logits);
  sampling_params p;
  p.temperature = 0.0f;
  p.chosen_logprob = true;
  auto row = logits;
  auto r = sampler(p).sample(row);
  EXPECT_EQ(r.token, 0);
  EXPECT_NEAR(r.logprob, std::log(probs[0]), 1e-5);
  EXPECT_TRUE(r.top.empty());
  p.chosen_logprob = false;
  row = logits;
  r = sampler(p).sample(row);
  EXPECT_EQ(r.token, 0);
  EXPECT_EQ(r.logprob, 0.0f);
}

TEST(Sampler, LogprobsAreOfTheRawDistribution) {
  // Penalties and temperature change what is sampled, not the reported log-probabilities.
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f};
  const auto probs = softmax(logits);
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 10.0f;
  p.logprobs = 3;
  const std::vector<int32_t> prompt = {0};
  sampler s(p, prompt);
  auto row = logits;
  auto r = s.sample(row);
  EXPECT_EQ(r.token, 1);  // 0 fell to 0.2
  EXPECT_NEAR(r.logprob, std::log(probs[1]), 1e-5);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].id, 0);
  EXPECT_NEAR(r.top[0].logprob, std::log(probs[0]), 1e-5);
}

TEST(Sampler, LogprobsCountIsClippedToTheVocabAndTiesGoToLowerIds) {
  sampling_params p;
  p.temperature = 0.0f;
  p.logprobs = 10;
  sampler s(p);
  std::vector<float> logits = {0.0f, 1.0f, 0.0f};
  auto r = s.sample(logits);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].id, 1);
  EXPECT_EQ(r.top[1].id, 0);
  EXPECT_EQ(r.top[2].id, 2);
  sampling_params none;
  sampler t(none);
  std::vector<float> again = {0.0f, 1.0f, 0.0f};
  EXPECT_TRUE(t.sample(again).top.empty());
}

TEST(Sampler, StopIdsAreFlagged) {
  sampling_params p;
  p.temperature = 0.0f;
  p.stop_token_ids = {7, 2};
  sampler s(p);
  std::vector<float> stop = {0.0f, 0.0f, 5.0f};
  EXPECT_TRUE(s.sample(stop).is_stop);
  std::vector<float> go = {0.0f, 5.0f, 0.0f};
  EXPECT_FALSE(s.sample(go).is_stop);
}

}  // namespace
}  // namespace troupe
