#pragma once
// What a load test shows: a progress line on stderr while it runs, a table on stdout (one column per
// run of a sweep, vLLM's labels), the raw results as JSON (summary with vLLM's metric names plus the
// per-request records) and an SVG of latency percentiles and throughput against the swept setting.

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/loadgen/client.hpp"
#include "runtime/loadgen/metrics.hpp"

namespace troupe::loadgen {

/// One run of a sweep: its settings and what it measured.
struct run_result {
  double request_rate = 0.0;             ///< inf: all at once
  double burstiness = 1.0;
  std::optional<int> max_concurrency;    ///< the cap, if any
  run_summary summary;
  std::vector<request_record> records;
};

/// The table: one column per run.
std::string format_table(std::span<const run_result> runs, std::span<const double> percentiles, bool with_goodput);

/// The distinct errors of the runs, most frequent first, at most max_lines lines ("" if none).
std::string format_errors(std::span<const run_result> runs, size_t max_lines = 10);

/// One run as JSON: request_rate ("inf" when unlimited), burstiness, max_concurrency (null when
/// uncapped), vLLM's summary keys (completed, failed, duration, request_throughput, ...,
/// mean/median/std/pNN of ttft, tpot, itl, e2el in ms, request_goodput, max_concurrent_requests)
/// and "requests": the per-request records.
nlohmann::ordered_json run_json(const run_result& run, std::span<const double> percentiles, bool with_goodput);

/// A self-contained SVG: TTFT, TPOT, ITL and E2E latency (mean, median, percentiles) and output
/// and request throughput against the swept setting (x_label names it; x_values label each run).
std::string plot_svg(std::span<const run_result> runs, std::span<const std::string> x_values, const std::string& x_label,
                     std::span<const double> percentiles, const std::string& title);

/// A progress line on stderr: redrawn in place on a terminal, a line per tenth of the run otherwise.
class progress_bar {
 public:
  progress_bar(std::string label, bool terminal);
  void update(const run_progress& p);
  /// The final state and a newline.
  void finish(const run_progress& p);

 private:
  void draw(const run_progress& p);
  std::string label_;
  bool terminal_;
  size_t last_tenth_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace troupe::loadgen
