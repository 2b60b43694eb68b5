#pragma once
// Per-request measurements of a load test and their summary, with vLLM `bench serve`'s definitions
// and names so that results compare directly: percentiles interpolate linearly between the closest
// ranks (numpy's default), std is the population deviation, an empty list summarises as 0, TPOT =
// (E2E - TTFT) / (output tokens - 1) over requests with more than one output token, and goodput
// counts completed requests within every SLO given (a one-token request's TPOT counts as 0).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe::loadgen {

/// What happened to one request. Times are seconds on a steady clock, from the start of the run.
struct request_record {
  size_t index = 0;
  int64_t conversation = -1;  ///< multi-turn: the conversation; -1 otherwise
  int32_t turn = 0;           ///< multi-turn: the turn within it
  double scheduled_s = 0.0;   ///< when the arrival process released it
  double start_s = 0.0;       ///< when it was sent (later than scheduled_s under a concurrency cap)
  bool success = false;
  std::string error;          ///< why it failed ("" on success)
  double ttft_s = 0.0;        ///< first token, from start_s
  double latency_s = 0.0;     ///< end to end: the last chunk with choices, from start_s
  std::vector<double> itl_s;  ///< gaps between consecutive chunks that carried text
  int64_t prompt_tokens = 0;  ///< the server's usage.prompt_tokens, else the local count
  int64_t output_tokens = 0;  ///< the server's usage.completion_tokens, else chunks with text
  bool usage_from_server = false;
  std::string generated_text;
};

/// Service-level objectives for goodput, in milliseconds.
struct slo_targets {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool any() const noexcept { return ttft_ms || tpot_ms || e2el_ms; }
};

/// "ttft:500", "tpot:50", "e2el:2000" (also several in one comma-separated word), in ms.
expected<slo_targets> parse_goodput(std::span<const std::string> pairs);

/// numpy.percentile(values, p) with linear interpolation; values must be sorted and non-empty.
double percentile_sorted(std::span<const double> sorted, double p);

/// Mean, median, population std and chosen percentiles of one latency metric, in ms.
struct latency_stats {
  double mean_ms = 0.0, median_ms = 0.0, std_ms = 0.0;
  std::vector<std::pair<double, double>> percentiles_ms;  ///< (p, value)
};

/// Statistics of values given in seconds; an empty list gives zeros (numpy of [0], as vLLM does).
latency_stats describe_seconds(std::vector<double> values_s, std::span<const double> percentiles);

/// The summary of one run.
struct run_summary {
  double duration_s = 0.0;
  int64_t completed = 0, failed = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  double request_throughput = 0.0;      ///< completed / duration
  std::optional<double> request_goodput;///< good completed / duration (only with SLOs)
  double output_throughput = 0.0;       ///< output tokens / duration
  double total_token_throughput = 0.0;  ///< (input + output tokens) / duration
  double max_output_tokens_per_s = 0.0; ///< busiest one-second bucket of token arrivals
  int64_t max_concurrent_requests = 0;  ///< peak of requests in flight (successful ones, as vLLM)
  latency_stats ttft, tpot, itl, e2el;
};

/// Summarises the records of a run that lasted duration_s.
run_summary summarize(std::span<const request_record> records, double duration_s,
                      std::span<const double> percentiles, const slo_targets& slo);

/// "99" for 99.0, "99.9" for 99.9: the p-word of vLLM's metric names (p99_ttft_ms).
std::string percentile_word(double p);

}  // namespace troupe::loadgen
