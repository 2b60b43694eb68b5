#include "runtime/loadgen/client.hpp"

#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

namespace troupe::loadgen {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// "1 s", "2.5 s".
std::string format_seconds(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

json base_body(const body_options& o, int32_t max_tokens) {
  json j;
  j["model"] = o.model;
  // Chat's newer name for max_tokens; OpenAI deprecates max_tokens there.
  j[o.api == api_kind::chat ? "max_completion_tokens" : "max_tokens"] = max_tokens;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (o.temperature) j["temperature"] = *o.temperature;
  if (o.ignore_eos) j["ignore_eos"] = true;
  return j;
}

void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

double seconds_between(clock_type::time_point a, clock_type::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

std::string request_body(const body_options& o, std::span<const workload_item> items, size_t i,
                         std::span<const request_record> records) {
  const workload_item& it = items[i];
  json j = base_body(o, it.output_len);
  if (o.api == api_kind::completions) {
    j["prompt"] = it.prompt;
    return dump(j);
  }
  // The conversation so far: follow the chain of earlier turns back to the first.
  std::vector<size_t> chain{i};
  while (items[chain.back()].after >= 0) chain.push_back(static_cast<size_t>(items[chain.back()].after));
  json messages = json::array();
  for (auto k = chain.rbegin(); k != chain.rend(); ++k) {
    messages.push_back({{"role", "user"}, {"content", items[*k].prompt}});
    if (*k != i) messages.push_back({{"role", "assistant"}, {"content", records[*k].generated_text}});
  }
  j["messages"] = std::move(messages);
  return dump(j);
}

// ---------------------------------------------------------------------------------------------

void stream_reader::feed(std::string_view bytes, double now_s) {
  constexpr size_t head_limit = 2048;
  if (head_.size() < head_limit) head_.append(bytes.substr(0, head_limit - head_.size()));
  // Every line completed by these bytes arrived now, even if it began in an earlier read.
  size_t start = 0;
  for (size_t nl; (nl = bytes.find('\n', start)) != std::string_view::npos; start = nl + 1) {
    if (partial_.empty()) {
      on_line(bytes.substr(start, nl - start), now_s);
    } else {
      partial_.append(bytes.substr(start, nl - start));
      on_line(partial_, now_s);
      partial_.clear();
    }
  }
  partial_.append(bytes.substr(start));
}

void stream_reader::on_line(std::string_view line, double now_s) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!line.starts_with("data:")) return;  // comments, event names, the blank line between events
  line.remove_prefix(5);
  if (line.starts_with(' ')) line.remove_prefix(1);
  if (line == "[DONE]") {
    done_ = true;
    return;
  }
  ++chunks_;
  const json j = json::parse(line, nullptr, false);
  if (!j.is_object()) {
    if (error_.empty()) error_ = "a data line is not a JSON object: " + std::string(line.substr(0, 120));
    return;
  }
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    if (error_.empty()) error_ = e->is_object() && e->contains("message") && (*e)["message"].is_string() ? (*e)["message"].get<std::string>() : dump(*e);
    return;
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer()) prompt_tokens_ = p->get<int64_t>();
    if (auto c = u->find("completion_tokens"); c != u->end() && c->is_number_integer()) completion_tokens_ = c->get<int64_t>();
  }
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) return;
  last_choice_s_ = now_s;
  const json& c = (*choices)[0];
  const json* text = nullptr;
  if (auto t = c.find("text"); t != c.end()) text = &*t;
  else if (auto d = c.find("delta"); d != c.end() && d->is_object() && d->contains("content")) text = &(*d)["content"];
  if (text && text->is_string() && !text->get_ref<const std::string&>().empty()) {
    token_times_.push_back(now_s);
    text_ += text->get_ref<const std::string&>();
  }
}

void stream_reader::finish(request_record& rec, std::string_view transport_error, long http_status) const {
  rec.success = false;
  const std::string after = " (after " + std::to_string(chunks_) + " chunks)";
  if (http_status != 0 && http_status != 200) {
    // OpenAI-shaped error bodies name the problem in error.message.
    const json j = json::parse(head_, nullptr, false);
    std::string message = head_.substr(0, 300);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") && j["error"]["message"].is_string())
      message = j["error"]["message"].get<std::string>();
    rec.error = "HTTP " + std::to_string(http_status) + ": " + message;
  } else if (!transport_error.empty()) {
    rec.error = std::string(transport_error) + after;
  } else if (!error_.empty()) {
    rec.error = "error in the stream: " + error_;
  } else if (!done_) {
    rec.error = "the stream ended before data: [DONE]" + after;
  } else if (token_times_.empty()) {
    rec.error = "the stream carried no text, so it has no first token";  // vLLM counts these as failed too
  } else {
    rec.success = true;
  }
  rec.generated_text = text_;
  if (prompt_tokens_) rec.prompt_tokens = *prompt_tokens_;
  rec.usage_from_server = completion_tokens_.has_value();
  rec.output_tokens = completion_tokens_.value_or(static_cast<int64_t>(token_times_.size()));
  if (!rec.success) return;
  rec.ttft_s = token_times_.front() - rec.start_s;
  rec.latency_s = last_choice_s_ - rec.start_s;
  rec.itl_s.clear();
  for (size_t k = 1; k < token_times_.size(); ++k) rec.itl_s.push_back(token_times_[k] - token_times_[k - 1]);
}

// ---------------------------------------------------------------------------------------------

namespace {

/// One request on the wire.
struct transfer {
  CURL* easy = nullptr;
  std::string body;
  stream_reader reader;
  clock_type::time_point t0;
  char errbuf[CURL_ERROR_SIZE] = {};
};

size_t on_bytes(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  t->reader.feed(std::string_view(data, size * n), seconds_between(t->t0, clock_type::now()));
  return size * n;
}

struct curl_slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

run_outcome run_requests(const client_options& opts, std::span<const planned_request> plan, const body_builder& body,
                         const progress_fn& progress) {
  curl_global();
  const size_t n = plan.size();
  run_outcome out;
  out.records.resize(n);
  for (size_t i = 0; i < n; ++i) {
    request_record& r = out.records[i];
    r.index = i;
    r.scheduled_s = plan[i].send_at_s;
    r.prompt_tokens = plan[i].prompt_tokens;
    r.conversation = plan[i].conversation;
    r.turn = plan[i].turn;
  }
  std::unique_ptr<curl_slist, curl_slist_deleter> headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  curl_slist_append(headers.get(), "Accept: text/event-stream");
  curl_slist_append(headers.get(), "Expect:");  // no 100-continue round trip before long prompts
  CURLM* multi = curl_multi_init();
  // Keep a connection per concurrent request alive between requests, as an HTTP client pool does.
  const long pool = opts.max_concurrency > 0 ? opts.max_concurrency : static_cast<long>(std::min<size_t>(n, 4096));
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, std::max(1L, pool));

  std::vector<std::unique_ptr<transfer>> transfers(n);
  std::vector<char> finished(n, 0);
  std::vector<size_t> waiting(n);
  for (size_t i = 0; i < n; ++i) waiting[i] = i;
  size_t done = 0, failed = 0, in_flight = 0;
  const auto t0 = clock_type::now();
  auto now_s = [&] { return seconds_between(t0, clock_type::now()); };
  double last_end = 0.0, last_progress = -1.0;
  auto report = [&](bool force) {
    if (!progress) return;
    const double t = now_s();
    if (!force && t - last_progress < 0.05) return;
    last_progress = t;
    progress(run_progress{n, done, failed, in_flight, t});
  };
  auto finish = [&](size_t i) {
    finished[i] = 1;
    ++done;
    failed += !out.records[i].success;
    last_end = now_s();
  };

  while (done < n) {
    // Release what is due, oldest first, while the cap allows.
    const double now = now_s();
    for (auto it = waiting.begin(); it != waiting.end();) {
      const size_t i = *it;
      if (plan[i].send_at_s > now) break;
      const int64_t after = plan[i].after;
      if (after >= 0 && !finished[static_cast<size_t>(after)]) {
        ++it;
        continue;
      }
      if (after >= 0 && !out.records[static_cast<size_t>(after)].success) {
        out.records[i].error = "not sent: request " + std::to_string(after) + ", the turn before it, failed";
        out.records[i].start_s = now;
        finish(i);
        it = waiting.erase(it);
        continue;
      }
      if (opts.max_concurrency > 0 && in_flight >= static_cast<size_t>(opts.max_concurrency)) break;
      auto t = std::make_unique<transfer>();
      t->t0 = t0;
      t->body = body(i, out.records);
      t->easy = curl_easy_init();
      CURL* c = t->easy;
      curl_easy_setopt(c, CURLOPT_URL, opts.url.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size()));
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, t.get());
      curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->errbuf);
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::ceil(opts.timeout_s * 1000.0)));
      curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(c, CURLOPT_PRIVATE, reinterpret_cast<void*>(i));
      out.records[i].start_s = now_s();
      curl_multi_add_handle(multi, c);
      transfers[i] = std::move(t);
      ++in_flight;
      it = waiting.erase(it);
    }
    if (done == n) break;

    int running = 0;
    curl_multi_perform(multi, &running);
    bool freed = false;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* c = msg->easy_handle;
      void* priv = nullptr;
      curl_easy_getinfo(c, CURLINFO_PRIVATE, &priv);
      const auto i = reinterpret_cast<size_t>(priv);
      long status = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
      const CURLcode code = msg->data.result;
      std::string transport;
      // A timeout gets a fixed text: curl's names the milliseconds and bytes seen, which differ per
      // request, and the report groups failures by their text.
      if (code == CURLE_OPERATION_TIMEDOUT)
        transport = "timed out: no complete reply within --timeout " + format_seconds(opts.timeout_s) + " (curl error 28)";
      else if (code != CURLE_OK)
        transport = std::string(transfers[i]->errbuf[0] ? transfers[i]->errbuf : curl_easy_strerror(code)) + " (curl error " +
                    std::to_string(static_cast<int>(code)) + ")";
      transfers[i]->reader.finish(out.records[i], transport, status);
      curl_multi_remove_handle(multi, c);
      curl_easy_cleanup(c);
      transfers[i].reset();
      --in_flight;
      finish(i);
      freed = true;
    }
    report(false);
    if (freed || done == n) continue;  // a slot or a dependency may have opened: dispatch again at once
    // Sleep until a socket is ready or the next release is due (at most 50 ms, for the progress);
    // at the cap only a reply can let the next one go.
    double wait_s = 0.05;
    const bool capped = opts.max_concurrency > 0 && in_flight >= static_cast<size_t>(opts.max_concurrency);
    for (size_t i : capped ? std::span<const size_t>() : std::span<const size_t>(waiting)) {
      const int64_t after = plan[i].after;
      if (after >= 0 && !finished[static_cast<size_t>(after)]) continue;
      wait_s = std::min(wait_s, std::max(0.0, plan[i].send_at_s - now_s()));
      break;
    }
    curl_multi_poll(multi, nullptr, 0, static_cast<int>(std::ceil(wait_s * 1000.0)), nullptr);
  }
  curl_multi_cleanup(multi);
  out.duration_s = last_end;
  report(true);
  return out;
}

expected<std::vector<std::string>> fetch_model_ids(const std::string& base_url, double timeout_s) {
  curl_global();
  const std::string url = base_url + "/v1/models";
  std::string body;
  CURL* c = curl_easy_init();
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t k, void* u) {
    static_cast<std::string*>(u)->append(d, s * k);
    return s * k;
  });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::ceil(timeout_s * 1000.0)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  const CURLcode code = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (code != CURLE_OK)
    return make_error(errc::unavailable, "GET " + url + ": " + (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(code)));
  if (status != 200) return make_error(errc::unavailable, "GET " + url + ": HTTP " + std::to_string(status));
  const json j = json::parse(body, nullptr, false);
  std::vector<std::string> ids;
  if (j.is_object() && j.contains("data") && j["data"].is_array())
    for (const auto& m : j["data"])
      if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
  if (ids.empty()) return make_error(errc::not_found, "GET " + url + ": the server lists no models");
  return ids;
}

}  // namespace troupe::loadgen
