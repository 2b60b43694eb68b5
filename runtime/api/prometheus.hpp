#pragma once
// Prometheus text exposition format (version 0.0.4) for GET /metrics.
//
// The format needs every sample of a metric family together, under one # HELP and one # TYPE
// line. The writer therefore collects samples per family, in first-use order, and renders them
// grouped, so callers may add samples of different families in any order.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

/// Label name/value pairs of one sample, in the order to print them.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// A histogram's state: upper bounds (ascending, without +Inf) and per-bucket counts.
struct histogram_data {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  ///< bounds.size() + 1 entries; the last is the +Inf bucket
  double sum = 0.0;
  uint64_t count = 0;

  histogram_data() = default;
  /// Empty histogram over the given ascending bounds.
  explicit histogram_data(std::vector<double> upper_bounds);
  /// Counts one observation into the first bucket whose bound is >= value.
  void observe(double value);
};

/// Collects metric samples and renders the text format.
class prometheus_writer {
 public:
  /// Adds a counter sample; name should end in "_total" by Prometheus convention.
  void counter(std::string_view name, std::string_view help, double value,
               const metric_labels& labels = {});
  /// Adds a gauge sample.
  void gauge(std::string_view name, std::string_view help, double value,
             const metric_labels& labels = {});
  /// Adds a histogram: cumulative name_bucket{le=...} lines with +Inf, name_sum and name_count.
  void histogram(std::string_view name, std::string_view help, const histogram_data& h,
                 const metric_labels& labels = {});

  /// The exposition text, families in first-use order.
  std::string text() const;

  /// Content-Type of the text format.
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct family {
    std::string name;
    std::string type;
    std::string help;
    std::string samples;  ///< rendered sample lines
  };
  family& family_of(std::string_view name, std::string_view type, std::string_view help);

  std::vector<family> families_;
};

/// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);
/// Formats a sample value: integers without exponent, +Inf, -Inf, NaN as Prometheus spells them.
std::string format_metric_value(double value);

}  // namespace troupe
