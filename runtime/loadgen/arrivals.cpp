#include "runtime/loadgen/arrivals.hpp"

#include <cmath>
#include <numbers>
#include <string>

namespace troupe::loadgen {
namespace {

// Standard normal from two uniforms (Box-Muller); 1 - u keeps the log's argument in (0, 1].
double sample_normal(xoshiro256ss& rng) {
  const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace

double sample_gamma(xoshiro256ss& rng, double shape, double scale) {
  if (shape < 1.0) {
    // G(a) = G(a + 1) * U^(1/a) (Marsaglia and Tsang, section 6).
    const double u = 1.0 - rng.uniform();
    return sample_gamma(rng, shape + 1.0, scale) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = 0.0, v = 0.0;
    do {
      x = sample_normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = 1.0 - rng.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * scale;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v * scale;
  }
}

expected<std::vector<double>> arrival_times(size_t n, const arrival_options& opts) {
  if (!(opts.request_rate > 0.0))
    return make_error(errc::invalid_argument, "request rate must be > 0 (inf: all at once), got " + std::to_string(opts.request_rate));
  if (!(opts.burstiness > 0.0))
    return make_error(errc::invalid_argument, "burstiness must be > 0, got " + std::to_string(opts.burstiness));
  std::vector<double> times(n, 0.0);
  if (std::isinf(opts.request_rate)) return times;
  xoshiro256ss rng(opts.seed);
  double t = 0.0;
  for (auto& at : times) {
    // Gamma(k, 1/(rate k)) has mean 1/rate whatever k; k -> inf is the constant interval.
    t += std::isinf(opts.burstiness) ? 1.0 / opts.request_rate
                                     : sample_gamma(rng, opts.burstiness, 1.0 / (opts.request_rate * opts.burstiness));
    at = t;
  }
  return times;
}

}  // namespace troupe::loadgen
