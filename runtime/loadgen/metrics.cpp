#include "runtime/loadgen/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

namespace troupe::loadgen {

expected<slo_targets> parse_goodput(std::span<const std::string> pairs) {
  slo_targets slo;
  for (const auto& word : pairs) {
    std::stringstream in(word);
    std::string pair;
    while (std::getline(in, pair, ',')) {
      if (pair.empty()) continue;
      const auto colon = pair.find(':');
      if (colon == std::string::npos)
        return make_error(errc::invalid_argument, "--goodput: '" + pair + "' is not KEY:MS (e.g. ttft:500)");
      const std::string key = pair.substr(0, colon), value = pair.substr(colon + 1);
      double ms = 0.0;
      try {
        size_t used = 0;
        ms = std::stod(value, &used);
        if (used != value.size()) throw std::invalid_argument(value);
      } catch (const std::exception&) {
        return make_error(errc::invalid_argument, "--goodput: '" + value + "' is not a number of milliseconds");
      }
      if (!(ms >= 0.0)) return make_error(errc::invalid_argument, "--goodput: " + key + " must be >= 0 ms");
      if (key == "ttft") slo.ttft_ms = ms;
      else if (key == "tpot") slo.tpot_ms = ms;
      else if (key == "e2el") slo.e2el_ms = ms;
      else return make_error(errc::invalid_argument, "--goodput: unknown metric '" + key + "' (ttft, tpot or e2el)");
    }
  }
  return slo;
}

double percentile_sorted(std::span<const double> sorted, double p) {
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank)), hi = static_cast<size_t>(std::ceil(rank));
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

latency_stats describe_seconds(std::vector<double> values_s, std::span<const double> percentiles) {
  if (values_s.empty()) values_s.push_back(0.0);
  std::sort(values_s.begin(), values_s.end());
  const double n = static_cast<double>(values_s.size());
  const double mean = std::accumulate(values_s.begin(), values_s.end(), 0.0) / n;
  double var = 0.0;
  for (double v : values_s) var += (v - mean) * (v - mean);
  latency_stats s;
  s.mean_ms = mean * 1000.0;
  s.median_ms = percentile_sorted(values_s, 50.0) * 1000.0;
  s.std_ms = std::sqrt(var / n) * 1000.0;
  for (double p : percentiles) s.percentiles_ms.emplace_back(p, percentile_sorted(values_s, p) * 1000.0);
  return s;
}

run_summary summarize(std::span<const request_record> records, double duration_s,
                      std::span<const double> percentiles, const slo_targets& slo) {
  run_summary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  int64_t good = 0;
  for (const auto& r : records) {
    if (!r.success) {
      ++s.failed;
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    double tpot = 0.0;  // a one-token request meets any TPOT objective (vLLM)
    if (r.output_tokens > 1) {
      tpot = (r.latency_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1);
      tpots.push_back(tpot);
    }
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
    // SLOs are met when the value is at most the target (vLLM: slo >= value).
    const bool is_good = (!slo.ttft_ms || r.ttft_s * 1000.0 <= *slo.ttft_ms) &&
                         (!slo.tpot_ms || tpot * 1000.0 <= *slo.tpot_ms) &&
                         (!slo.e2el_ms || r.latency_s * 1000.0 <= *slo.e2el_ms);
    good += is_good;
  }
  if (duration_s > 0.0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput = static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
    if (slo.any()) s.request_goodput = static_cast<double>(good) / duration_s;
  } else if (slo.any()) {
    s.request_goodput = 0.0;
  }

  // Peak tokens in a one-second bucket (from the first successful send) and peak concurrency by a
  // sweep over half-open [start, end) intervals, ends before starts at equal times: both as vLLM.
  std::optional<double> first_start;
  for (const auto& r : records)
    if (r.success) first_start = first_start ? std::min(*first_start, r.start_s) : r.start_s;
  if (first_start) {
    std::vector<double> buckets;
    std::vector<std::pair<double, int>> events;
    for (const auto& r : records) {
      if (!r.success) continue;
      double t = r.start_s + r.ttft_s;
      auto count = [&](double at) {
        const auto b = static_cast<size_t>(std::max(0.0, at - *first_start));
        if (b >= buckets.size()) buckets.resize(b + 1, 0.0);
        buckets[b] += 1.0;
      };
      count(t);
      for (double gap : r.itl_s) count(t += gap);
      events.emplace_back(r.start_s, +1);
      events.emplace_back(r.start_s + r.latency_s, -1);
    }
    s.max_output_tokens_per_s = *std::max_element(buckets.begin(), buckets.end());
    std::sort(events.begin(), events.end());
    int64_t now = 0;
    for (const auto& [t, delta] : events) s.max_concurrent_requests = std::max(s.max_concurrent_requests, now += delta);
  }
  s.ttft = describe_seconds(std::move(ttfts), percentiles);
  s.tpot = describe_seconds(std::move(tpots), percentiles);
  s.itl = describe_seconds(std::move(itls), percentiles);
  s.e2el = describe_seconds(std::move(e2els), percentiles);
  return s;
}

std::string percentile_word(double p) {
  if (p == std::floor(p)) return std::to_string(static_cast<int64_t>(p));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", p);
  return buf;
}

}  // namespace troupe::loadgen
