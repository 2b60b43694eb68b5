#include "runtime/api/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace troupe {
namespace {

// Names outside [a-zA-Z_:][a-zA-Z0-9_:]* would break the scrape; replace bad characters with
// '_' rather than fail, since a metric name is a programming error, not a user's.
std::string sanitize_name(std::string_view name, bool allow_colon) {
  std::string out(name);
  for (size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) out[i] = '_';
  }
  if (out.empty()) out = "_";
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void append_labels(std::string& out, const metric_labels& labels, std::string_view le = {}) {
  if (labels.empty() && le.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    out += sanitize_name(k, /*allow_colon=*/false);
    out += "=\"";
    out += escape_label_value(v);
    out += '"';
    first = false;
  }
  if (!le.empty()) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void append_sample(std::string& out, std::string_view name, const metric_labels& labels,
                   double value, std::string_view le = {}) {
  out += name;
  append_labels(out, labels, le);
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

histogram_data::histogram_data(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void histogram_data::observe(double value) {
  if (counts.size() != bounds.size() + 1) counts.assign(bounds.size() + 1, 0);
  const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
  ++counts[static_cast<size_t>(it - bounds.begin())];
  sum += value;
  ++count;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Whole numbers (counters, counts) print without exponent or fraction up to 2^53.
  if (value == std::floor(value) && std::fabs(value) < 9.007199254740992e15) {
    auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(value));
    return std::string(buf, p);
  }
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, p);
}

prometheus_writer::family& prometheus_writer::family_of(std::string_view name, std::string_view type,
                                                        std::string_view help) {
  const std::string clean = sanitize_name(name, /*allow_colon=*/true);
  for (auto& f : families_) {
    if (f.name == clean) return f;
  }
  families_.push_back({clean, std::string(type), std::string(help), {}});
  return families_.back();
}

void prometheus_writer::counter(std::string_view name, std::string_view help, double value,
                                const metric_labels& labels) {
  family& f = family_of(name, "counter", help);
  append_sample(f.samples, f.name, labels, value);
}

void prometheus_writer::gauge(std::string_view name, std::string_view help, double value,
                              const metric_labels& labels) {
  family& f = family_of(name, "gauge", help);
  append_sample(f.samples, f.name, labels, value);
}

void prometheus_writer::histogram(std::string_view name, std::string_view help,
                                  const histogram_data& h, const metric_labels& labels) {
  family& f = family_of(name, "histogram", help);
  const std::string bucket = f.name + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    if (i < h.counts.size()) cumulative += h.counts[i];
    append_sample(f.samples, bucket, labels, static_cast<double>(cumulative),
                  format_metric_value(h.bounds[i]));
  }
  // +Inf holds every observation, whatever the per-bucket counts say.
  append_sample(f.samples, bucket, labels, static_cast<double>(h.count), "+Inf");
  append_sample(f.samples, f.name + "_sum", labels, h.sum);
  append_sample(f.samples, f.name + "_count", labels, static_cast<double>(h.count));
}

std::string prometheus_writer::text() const {
  std::string out;
  for (const auto& f : families_) {
    if (!f.help.empty()) out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + f.type + "\n";
    out += f.samples;
  }
  return out;
}

}  // namespace troupe
