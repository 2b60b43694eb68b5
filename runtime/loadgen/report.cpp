#include "runtime/loadgen/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace troupe::loadgen {
namespace {

using ojson = nlohmann::ordered_json;

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string rate_text(double rate) { return std::isinf(rate) ? "inf" : fixed(rate, 2); }

/// s centred in a line of width w filled with c (Python's "{s:c^w}").
std::string centred(const std::string& s, char c, size_t w) {
  if (s.size() >= w) return s;
  const size_t left = (w - s.size()) / 2;
  return std::string(left, c) + s + std::string(w - s.size() - left, c);
}

/// A number, or "inf" (JSON has no infinity).
ojson number_or_inf(double v) { return std::isinf(v) ? ojson("inf") : ojson(v); }

struct metric_view {
  const char* key;     ///< ttft, tpot, itl, e2el
  const char* name;    ///< TTFT ...
  const char* header;  ///< the section title
  const latency_stats run_summary::*stats;
};

constexpr metric_view metrics[] = {
    {"ttft", "TTFT", "Time to First Token", &run_summary::ttft},
    {"tpot", "TPOT", "Time per Output Token (excl. 1st token)", &run_summary::tpot},
    {"itl", "ITL", "Inter-token Latency", &run_summary::itl},
    {"e2el", "E2EL", "End-to-end Latency", &run_summary::e2el},
};

}  // namespace

std::string format_table(std::span<const run_result> runs, std::span<const double> percentiles, bool with_goodput) {
  constexpr size_t label_w = 40, col_w = 12;
  const size_t width = std::max<size_t>(50, label_w + col_w * runs.size());
  std::string out = centred(" Serving Benchmark Result ", '=', width) + "\n";
  auto row = [&](const std::string& label, auto&& cell) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%-*s", static_cast<int>(label_w), label.c_str());
    out += buf;
    for (const auto& r : runs) {
      std::snprintf(buf, sizeof buf, "%*s", static_cast<int>(col_w), cell(r).c_str());
      out += buf;
    }
    out += "\n";
  };
  row("Maximum request concurrency:", [](const run_result& r) { return r.max_concurrency ? std::to_string(*r.max_concurrency) : std::string("none"); });
  row("Request rate configured (RPS):", [](const run_result& r) { return rate_text(r.request_rate); });
  row("Successful requests:", [](const run_result& r) { return std::to_string(r.summary.completed); });
  row("Failed requests:", [](const run_result& r) { return std::to_string(r.summary.failed); });
  row("Benchmark duration (s):", [](const run_result& r) { return fixed(r.summary.duration_s, 2); });
  row("Total input tokens:", [](const run_result& r) { return std::to_string(r.summary.total_input_tokens); });
  row("Total generated tokens:", [](const run_result& r) { return std::to_string(r.summary.total_output_tokens); });
  row("Request throughput (req/s):", [](const run_result& r) { return fixed(r.summary.request_throughput, 2); });
  if (with_goodput) row("Request goodput (req/s):", [](const run_result& r) { return fixed(r.summary.request_goodput.value_or(0.0), 2); });
  row("Output token throughput (tok/s):", [](const run_result& r) { return fixed(r.summary.output_throughput, 2); });
  row("Peak output token throughput (tok/s):", [](const run_result& r) { return fixed(r.summary.max_output_tokens_per_s, 2); });
  row("Peak concurrent requests:", [](const run_result& r) { return std::to_string(r.summary.max_concurrent_requests); });
  row("Total token throughput (tok/s):", [](const run_result& r) { return fixed(r.summary.total_token_throughput, 2); });
  for (const auto& m : metrics) {
    out += centred(m.header, '-', width) + "\n";
    const std::string name = m.name;
    row("Mean " + name + " (ms):", [&](const run_result& r) { return fixed((r.summary.*m.stats).mean_ms, 2); });
    row("Median " + name + " (ms):", [&](const run_result& r) { return fixed((r.summary.*m.stats).median_ms, 2); });
    row("Std " + name + " (ms):", [&](const run_result& r) { return fixed((r.summary.*m.stats).std_ms, 2); });
    for (size_t k = 0; k < percentiles.size(); ++k)
      row("P" + percentile_word(percentiles[k]) + " " + name + " (ms):",
          [&](const run_result& r) { return fixed((r.summary.*m.stats).percentiles_ms[k].second, 2); });
  }
  out += std::string(width, '=') + "\n";
  return out;
}

std::string format_errors(std::span<const run_result> runs, size_t max_lines) {
  std::map<std::string, int64_t> counts;
  for (const auto& run : runs)
    for (const auto& r : run.records)
      if (!r.success) ++counts[r.error];
  if (counts.empty()) return "";
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out = "Errors (most frequent first):\n";
  for (size_t k = 0; k < sorted.size() && k < max_lines; ++k)
    out += "  " + std::to_string(sorted[k].second) + " x " + sorted[k].first + "\n";
  if (sorted.size() > max_lines) out += "  ... and " + std::to_string(sorted.size() - max_lines) + " other errors\n";
  return out;
}

ojson run_json(const run_result& run, std::span<const double> percentiles, bool with_goodput) {
  const run_summary& s = run.summary;
  ojson j;
  j["request_rate"] = number_or_inf(run.request_rate);
  j["burstiness"] = number_or_inf(run.burstiness);
  j["max_concurrency"] = run.max_concurrency ? ojson(*run.max_concurrency) : ojson(nullptr);
  j["duration"] = s.duration_s;
  j["completed"] = s.completed;
  j["failed"] = s.failed;
  j["total_input_tokens"] = s.total_input_tokens;
  j["total_output_tokens"] = s.total_output_tokens;
  j["request_throughput"] = s.request_throughput;
  j["request_goodput"] = with_goodput && s.request_goodput ? ojson(*s.request_goodput) : ojson(nullptr);
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  j["max_output_tokens_per_s"] = s.max_output_tokens_per_s;
  j["max_concurrent_requests"] = s.max_concurrent_requests;
  for (const auto& m : metrics) {
    const latency_stats& st = s.*m.stats;
    const std::string key = m.key;
    j["mean_" + key + "_ms"] = st.mean_ms;
    j["median_" + key + "_ms"] = st.median_ms;
    j["std_" + key + "_ms"] = st.std_ms;
    for (size_t k = 0; k < percentiles.size(); ++k) j["p" + percentile_word(percentiles[k]) + "_" + key + "_ms"] = st.percentiles_ms[k].second;
  }
  ojson requests = ojson::array();
  for (const auto& r : run.records) {
    ojson q;
    q["index"] = r.index;
    if (r.conversation >= 0) {
      q["conversation"] = r.conversation;
      q["turn"] = r.turn;
    }
    q["success"] = r.success;
    q["error"] = r.error;
    q["scheduled_s"] = r.scheduled_s;
    q["start_s"] = r.start_s;
    q["ttft_s"] = r.ttft_s;
    q["latency_s"] = r.latency_s;
    q["itl_s"] = r.itl_s;
    q["prompt_tokens"] = r.prompt_tokens;
    q["output_tokens"] = r.output_tokens;
    q["usage_from_server"] = r.usage_from_server;
    requests.push_back(std::move(q));
  }
  j["requests"] = std::move(requests);
  return j;
}

// ---------------------------------------------------------------------------------------------

namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is >= v (v > 0).
double nice_step(double v) {
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10.0 * p;
}

struct series {
  std::string name;
  std::vector<double> values;  ///< one per run
};

constexpr const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};

/// One chart at (x0, y0) of size w x h.
void draw_panel(std::string& svg, double x0, double y0, double w, double h, const std::string& title, const std::string& y_label,
                const std::vector<series>& lines, std::span<const std::string> x_values, const std::string& x_label) {
  const double left = 62, right = 12, top = 44, bottom = 42;
  const double px = x0 + left, py = y0 + top, pw = w - left - right, ph = h - top - bottom;
  double ymax = 0.0;
  for (const auto& s : lines)
    for (double v : s.values) ymax = std::max(ymax, v);
  const double step = nice_step(ymax > 0.0 ? ymax / 5.0 : 0.2);
  const double ytop = step * std::max(1.0, std::ceil(ymax / step - 1e-9));
  char buf[512];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(buf, sizeof buf, fmt, args...);
    svg += buf;
  };
  add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", x0 + 8, y0 + 16, xml_escape(title).c_str());
  // Legend under the title.
  double lx = x0 + 8;
  for (size_t k = 0; k < lines.size(); ++k) {
    add("<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>", lx, y0 + 24, palette[k % std::size(palette)]);
    add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", lx + 13, y0 + 33, xml_escape(lines[k].name).c_str());
    lx += 22 + 6.5 * static_cast<double>(lines[k].name.size());
  }
  add("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", px, py, pw, ph);
  for (double v = 0.0; v <= ytop + step / 2; v += step) {
    const double y = py + ph - ph * v / ytop;
    add("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", px, y, px + pw, y);
    add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%g</text>\n", px - 4, y + 3, v);
  }
  auto x_at = [&](size_t k) { return px + pw * (static_cast<double>(k) + 0.5) / static_cast<double>(x_values.size()); };
  for (size_t k = 0; k < x_values.size(); ++k)
    add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n", x_at(k), py + ph + 14, xml_escape(x_values[k]).c_str());
  add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", px + pw / 2, py + ph + 32, xml_escape(x_label).c_str());
  add("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n", x0 + 14,
      py + ph / 2, x0 + 14, py + ph / 2, xml_escape(y_label).c_str());
  for (size_t k = 0; k < lines.size(); ++k) {
    const char* color = palette[k % std::size(palette)];
    std::string points;
    for (size_t i = 0; i < lines[k].values.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x_at(i), py + ph - ph * lines[k].values[i] / ytop);
      points += buf;
    }
    svg += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + std::string(color) + "\" points=\"" + points + "\"/>\n";
    for (size_t i = 0; i < lines[k].values.size(); ++i)
      add("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s: %g</title></circle>\n", x_at(i),
          py + ph - ph * lines[k].values[i] / ytop, color, xml_escape(lines[k].name).c_str(), lines[k].values[i]);
  }
}

}  // namespace

std::string plot_svg(std::span<const run_result> runs, std::span<const std::string> x_values, const std::string& x_label,
                     std::span<const double> percentiles, const std::string& title) {
  constexpr double panel_w = 380, panel_h = 300, head = 34;
  const double width = 3 * panel_w, height = head + 2 * panel_h;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                width, height, width, height);
  std::string svg = buf;
  svg += "<text x=\"12\" y=\"22\" font-size=\"16\" font-weight=\"bold\">" + xml_escape(title) + "</text>\n";
  auto latency_lines = [&](const latency_stats run_summary::*stats) {
    std::vector<series> lines{{"mean", {}}, {"median", {}}};
    for (double p : percentiles) lines.push_back({"p" + percentile_word(p), {}});
    for (const auto& r : runs) {
      const latency_stats& st = r.summary.*stats;
      lines[0].values.push_back(st.mean_ms);
      lines[1].values.push_back(st.median_ms);
      for (size_t k = 0; k < percentiles.size(); ++k) lines[2 + k].values.push_back(st.percentiles_ms[k].second);
    }
    return lines;
  };
  std::vector<series> tokens{{"output", {}}, {"total", {}}}, requests{{"completed", {}}};
  const bool goodput = std::any_of(runs.begin(), runs.end(), [](const run_result& r) { return r.summary.request_goodput.has_value(); });
  if (goodput) requests.push_back({"goodput", {}});
  for (const auto& r : runs) {
    tokens[0].values.push_back(r.summary.output_throughput);
    tokens[1].values.push_back(r.summary.total_token_throughput);
    requests[0].values.push_back(r.summary.request_throughput);
    if (goodput) requests[1].values.push_back(r.summary.request_goodput.value_or(0.0));
  }
  draw_panel(svg, 0, head, panel_w, panel_h, "Time to first token", "ms", latency_lines(&run_summary::ttft), x_values, x_label);
  draw_panel(svg, panel_w, head, panel_w, panel_h, "Time per output token", "ms", latency_lines(&run_summary::tpot), x_values, x_label);
  draw_panel(svg, 2 * panel_w, head, panel_w, panel_h, "Inter-token latency", "ms", latency_lines(&run_summary::itl), x_values, x_label);
  draw_panel(svg, 0, head + panel_h, panel_w, panel_h, "End-to-end latency", "ms", latency_lines(&run_summary::e2el), x_values, x_label);
  draw_panel(svg, panel_w, head + panel_h, panel_w, panel_h, "Token throughput", "tokens/s", tokens, x_values, x_label);
  draw_panel(svg, 2 * panel_w, head + panel_h, panel_w, panel_h, "Request throughput", "requests/s", requests, x_values, x_label);
  svg += "</svg>\n";
  return svg;
}

// ---------------------------------------------------------------------------------------------

progress_bar::progress_bar(std::string label, bool terminal) : label_(std::move(label)), terminal_(terminal) {}

void progress_bar::update(const run_progress& p) {
  if (terminal_) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(p);
    std::fputc('\r', stderr);
  } else if (p.total > 0) {
    const size_t tenth = 10 * p.completed / p.total;
    if (tenth <= last_tenth_) return;
    last_tenth_ = tenth;
    draw(p);
    std::fputc('\n', stderr);
  }
  std::fflush(stderr);
}

void progress_bar::finish(const run_progress& p) {
  if (!terminal_ && last_tenth_ >= 10) return;  // the last tenth was drawn already
  draw(p);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

void progress_bar::draw(const run_progress& p) {
  constexpr int width = 30;
  const int filled = p.total > 0 ? static_cast<int>(width * p.completed / p.total) : width;
  // On a terminal the line is redrawn in place: clear what a longer earlier line left behind.
  std::fprintf(stderr, "%s [%.*s%*s] %zu/%zu done, %zu failed, %zu in flight, %.1f s%s", label_.c_str(), filled,
               "##############################", width - filled, "", p.completed, p.total, p.failed, p.in_flight, p.elapsed_s,
               terminal_ ? "\x1b[K" : "");
}

}  // namespace troupe::loadgen
