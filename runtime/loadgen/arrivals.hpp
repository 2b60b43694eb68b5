#pragma once
// When the requests of a load test are sent. Open loop: a renewal process at a request rate whose
// inter-arrival times are gamma-distributed (shape = burstiness, mean = 1/rate; burstiness 1 is a
// Poisson process), as vLLM's `bench serve` draws them. The whole schedule is computed up front from
// the seed, so slow responses never delay later sends. Rate inf sends everything at once; with a
// concurrency cap that is a closed loop at that concurrency.

#include <cstdint>
#include <limits>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/sampling/rng.hpp"

namespace troupe::loadgen {

inline constexpr double unlimited_rate = std::numeric_limits<double>::infinity();

/// The arrival process of one run.
struct arrival_options {
  double request_rate = unlimited_rate;  ///< requests per second; inf: all at time 0
  /// Gamma shape of the inter-arrival times: 1 Poisson, < 1 burstier, > 1 more regular (CV =
  /// 1/sqrt(burstiness)); inf gives a constant 1/rate.
  double burstiness = 1.0;
  uint64_t seed = 0;
};

/// A gamma(shape, scale) variate (Marsaglia and Tsang's method; shape < 1 by boosting shape + 1).
double sample_gamma(xoshiro256ss& rng, double shape, double scale);

/// Send times of n requests in seconds from the start of the run, non-decreasing: the running sum
/// of n inter-arrival times (so the first request also waits one interval, as in vLLM).
expected<std::vector<double>> arrival_times(size_t n, const arrival_options& opts);

}  // namespace troupe::loadgen
