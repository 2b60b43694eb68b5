#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "runtime/api/prometheus.hpp"

namespace troupe {
namespace {

TEST(Prometheus, CountersAndGaugesGroupedByFamily) {
  prometheus_writer w;
  w.counter("troupe_requests_total", "Requests served.", 3, {{"model", "a"}});
  w.gauge("troupe_running", "Running sequences.", 2);
  w.counter("troupe_requests_total", "Requests served.", 5, {{"model", "b"}});
  EXPECT_EQ(w.text(),
            "# HELP troupe_requests_total Requests served.\n"
            "# TYPE troupe_requests_total counter\n"
            "troupe_requests_total{model=\"a\"} 3\n"
            "troupe_requests_total{model=\"b\"} 5\n"
            "# HELP troupe_running Running sequences.\n"
            "# TYPE troupe_running gauge\n"
            "troupe_running 2\n");
}

TEST(Prometheus, LabelValuesAndHelpAreEscaped) {
  prometheus_writer w;
  w.gauge("g", "line1\nback\\slash", 1, {{"path", "a\"b\\c\nd"}, {"bad-name", "x"}});
  EXPECT_EQ(w.text(),
            "# HELP g line1\\nback\\\\slash\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\"b\\\\c\\nd\",bad_name=\"x\"} 1\n");
}

TEST(Prometheus, HistogramBucketsAreCumulative) {
  histogram_data h({0.125, 0.5, 1.0});
  for (double v : {0.0625, 0.125, 0.25, 0.75, 2.0, 3.0}) h.observe(v);
  EXPECT_EQ(h.count, 6u);
  EXPECT_DOUBLE_EQ(h.sum, 6.1875);
  prometheus_writer w;
  w.histogram("ttft_seconds", "Time to first token.", h, {{"model", "m"}});
  EXPECT_EQ(w.text(),
            "# HELP ttft_seconds Time to first token.\n"
            "# TYPE ttft_seconds histogram\n"
            "ttft_seconds_bucket{model=\"m\",le=\"0.125\"} 2\n"
            "ttft_seconds_bucket{model=\"m\",le=\"0.5\"} 3\n"
            "ttft_seconds_bucket{model=\"m\",le=\"1\"} 4\n"
            "ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 6\n"
            "ttft_seconds_sum{model=\"m\"} 6.1875\n"
            "ttft_seconds_count{model=\"m\"} 6\n");
}

TEST(Prometheus, HistogramWithoutLabels) {
  histogram_data h({1});
  h.observe(0.5);
  prometheus_writer w;
  w.histogram("h", "", h);
  EXPECT_EQ(w.text(),
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum 0.5\n"
            "h_count 1\n");
}

TEST(Prometheus, SpecialValues) {
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_metric_value(std::nan("")), "NaN");
  EXPECT_EQ(format_metric_value(12345678901.0), "12345678901");
  EXPECT_EQ(format_metric_value(0.25), "0.25");
  EXPECT_EQ(format_metric_value(-3), "-3");
}

TEST(Prometheus, BadMetricNamesAreSanitized) {
  prometheus_writer w;
  w.gauge("9bad-name", "", 1);
  EXPECT_EQ(w.text(), "# TYPE _bad_name gauge\n_bad_name 1\n");
}

}  // namespace
}  // namespace troupe
