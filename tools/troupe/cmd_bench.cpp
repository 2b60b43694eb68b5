// troupe bench: a load generator for OpenAI-compatible servers, with vLLM `bench serve`'s options
// and metric names where they exist. Streams every request, timestamps each chunk, and reports
// throughput, TTFT/TPOT/ITL/E2E statistics and goodput for one run or a sweep of request rates or
// concurrency caps (table on stdout, --json, --plot).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/log.hpp"
#include "runtime/hub/pull.hpp"
#include "runtime/loadgen/arrivals.hpp"
#include "runtime/loadgen/client.hpp"
#include "runtime/loadgen/report.hpp"
#include "runtime/loadgen/workload.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

namespace fs = std::filesystem;
using namespace troupe::loadgen;

struct bench_args {
  std::string url = "http://127.0.0.1:8000";
  std::string endpoint;  ///< "" : /v1/completions, or /v1/chat/completions for multi-turn
  std::string model, served_model_name, tokenizer;
  std::string dataset = "random";
  workload_options workload;
  int32_t output_len = 128;
  std::string request_rate = "inf";
  std::vector<std::string> rates;
  double burstiness = 1.0;
  std::vector<int> max_concurrency;
  int warmup = 1;
  double timeout_s = 600.0;
  std::vector<std::string> goodput;
  std::vector<std::string> metric_percentiles{"90", "99"};
  double temperature = 0.0;
  bool ignore_eos = false, no_progress = false;
  std::string json_path, plot_path;
  // Which of the options with defaults were given.
  bool output_len_given = false, temperature_given = false, rates_given = false;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "troupe bench: %s\n", message.c_str());
  return 1;
}

expected<double> parse_number(const std::string& what, const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  return make_error(errc::invalid_argument, what + ": '" + text + "' is not a number");
}

/// A request rate as a word: "inf", "4", "0.5".
std::string rate_word(double rate) {
  if (std::isinf(rate)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", rate);
  return buf;
}

/// The seed of one part of the run (workload or arrivals of run k, the warm-up) from --seed.
uint64_t derived_seed(uint64_t seed, uint64_t part) {
  uint64_t s = seed ^ (part * 0x9e3779b97f4a7c15ULL);
  return splitmix64_next(s);
}

/// The model name to send and the local path to count tokens with ("" if --model is no local path).
struct model_choice {
  std::string name, local_path;
};

expected<model_choice> choose_model(const bench_args& a, const std::string& base_url) {
  model_choice m;
  if (!a.model.empty()) {
    // NAME=PATH or a local path name the model as `troupe serve` names it; anything else is the
    // name the server knows it by.
    auto [name, path] = split_model_arg(a.model);
    std::error_code ec;
    if (fs::exists(path, ec)) m = {name, path};
    else m.name = a.model;
  } else {
    auto ids = fetch_model_ids(base_url, std::min(a.timeout_s, 30.0));
    TROUPE_TRY(ids);
    m.name = ids->front();
    spdlog::info("bench: no --model given; the server's first model is '{}'", m.name);
  }
  if (!a.served_model_name.empty()) m.name = a.served_model_name;
  return m;
}

struct tokenizer_choice {
  std::unique_ptr<tokenizer> tok;
  std::string path;
};

/// --tokenizer, else the local model, else the model `troupe serve` serves by default.
expected<tokenizer_choice> choose_tokenizer(const bench_args& a, const model_choice& m) {
  std::string path = a.tokenizer.empty() ? m.local_path : a.tokenizer;
  if (path.empty()) {
    auto d = default_model();
    if (!d) return make_error(errc::not_found, "--model '" + m.name + "' is not a local path, so prompt lengths need --tokenizer PATH (" + d.error().message() + ")");
    path = *d;
    spdlog::warn("bench: counting prompt tokens with {} (the default model); pass --tokenizer if '{}' is another model", path, m.name);
  }
  auto resolved = resolve_model_path(path);  // hf:REPO/FILE: the cached file, pulled if missing
  if (!resolved) return make_error(resolved.error().code(), "tokenizer: " + resolved.error().what());
  path = *resolved;
  auto tok = load_bench_tokenizer(path);
  if (!tok) return make_error(tok.error().code(), "tokenizer: " + tok.error().what());
  return tokenizer_choice{std::move(*tok), path};
}

std::vector<planned_request> plan_of(const std::vector<workload_item>& items, const std::vector<double>& times) {
  std::vector<planned_request> plan(items.size());
  for (size_t i = 0; i < items.size(); ++i)
    plan[i] = planned_request{times[i], items[i].after, items[i].prompt_len, items[i].conversation, items[i].turn};
  return plan;
}

int run_bench(bench_args a) {
  // Settings first, so that a mistake costs no requests.
  std::vector<double> percentiles;
  for (const auto& word : a.metric_percentiles) {
    auto p = parse_number("--metric-percentiles", word);
    if (!p) return fail(p.error().message());
    if (!(*p > 0.0 && *p <= 100.0)) return fail("--metric-percentiles: " + word + " is not in (0, 100]");
    percentiles.push_back(*p);
  }
  auto slo = parse_goodput(a.goodput);
  if (!slo) return fail(slo.error().message());
  std::vector<double> rates;
  for (const auto& word : a.rates_given ? a.rates : std::vector<std::string>{a.request_rate}) {
    auto r = parse_number(a.rates_given ? "--rates" : "--request-rate", word);
    if (!r) return fail(r.error().message());
    if (!(*r > 0.0)) return fail("request rates must be > 0 (inf: all at once), got " + word);
    rates.push_back(*r);
  }
  std::vector<std::optional<int>> caps;
  for (int c : a.max_concurrency) {
    if (c < 1) return fail("--max-concurrency must be >= 1, got " + std::to_string(c));
    caps.emplace_back(c);
  }
  if (caps.empty()) caps.emplace_back(std::nullopt);
  if (rates.size() > 1 && caps.size() > 1) return fail("sweep either --rates or --max-concurrency, not both at once");
  if (!(a.burstiness > 0.0)) return fail("--burstiness must be > 0");
  if (!(a.timeout_s > 0.0)) return fail("--timeout must be > 0");

  workload_options& w = a.workload;
  if (a.dataset == "random") w.kind = dataset_kind::random;
  else if (a.dataset == "shared-prefix") w.kind = dataset_kind::shared_prefix;
  else if (a.dataset == "multi-turn") w.kind = dataset_kind::multi_turn;
  else if (std::error_code ec; fs::is_regular_file(a.dataset, ec)) {
    w.kind = dataset_kind::file;
    w.path = a.dataset;
  } else {
    return fail("--dataset: '" + a.dataset + "' is neither random, shared-prefix, multi-turn nor a file");
  }
  if (a.output_len_given) w.output_len = a.output_len;
  if (a.endpoint.empty()) a.endpoint = w.kind == dataset_kind::multi_turn ? "/v1/chat/completions" : "/v1/completions";
  const bool chat = a.endpoint.ends_with("/chat/completions");
  if (!chat && !a.endpoint.ends_with("/completions")) return fail("--endpoint must be /v1/completions or /v1/chat/completions");
  if (w.kind == dataset_kind::multi_turn && !chat) return fail("multi-turn conversations need --endpoint /v1/chat/completions");

  std::string base_url = a.url;
  while (base_url.ends_with('/')) base_url.pop_back();
  auto model = choose_model(a, base_url);
  if (!model) return fail(model.error().message());
  auto tok = choose_tokenizer(a, *model);
  if (!tok) return fail(tok.error().message());

  body_options body;
  body.model = model->name;
  body.api = chat ? api_kind::chat : api_kind::completions;
  if (a.temperature_given) body.temperature = a.temperature;
  body.ignore_eos = a.ignore_eos;
  client_options client;
  client.url = base_url + a.endpoint;
  client.timeout_s = a.timeout_s;
  const bool terminal = isatty(STDERR_FILENO);

  // Warm-up: sent all at once under the first cap and not counted. If none succeeds, the settings
  // (URL, model name, lengths) are wrong, and the run would only measure errors.
  if (a.warmup > 0) {
    workload_options ww = w;
    ww.num_prompts = static_cast<size_t>(a.warmup);
    ww.seed = derived_seed(w.seed, 0);
    auto items = build_workload(ww, *tok->tok);
    if (!items) return fail(items.error().message());
    client.max_concurrency = caps.front().value_or(0);
    const auto plan = plan_of(*items, std::vector<double>(items->size(), 0.0));
    const auto outcome = run_requests(client, plan, [&](size_t i, std::span<const request_record> recs) {
      return request_body(body, *items, i, recs);
    });
    size_t ok = 0;
    for (const auto& r : outcome.records) ok += r.success;
    if (ok == 0)
      return fail("warm-up failed, so the settings are probably wrong (URL, --model, lengths): " + outcome.records.front().error);
    if (ok < outcome.records.size())
      spdlog::warn("bench: {} of {} warm-up requests failed", outcome.records.size() - ok, outcome.records.size());
  }

  std::vector<run_result> runs;
  std::vector<std::string> x_values;
  const bool by_concurrency = caps.size() > 1 || (rates.size() == 1 && std::isinf(rates.front()) && caps.front());
  for (double rate : rates) {
    for (const auto& cap : caps) {
      const uint64_t k = runs.size() + 1;
      // Each run draws its own prompts: a repeat of the last run's would be served from the prefix cache.
      workload_options rw = w;
      rw.seed = derived_seed(w.seed, 2 * k);
      auto items = build_workload(rw, *tok->tok);
      if (!items) return fail(items.error().message());
      auto times = arrival_times(items->size(), arrival_options{rate, a.burstiness, derived_seed(w.seed, 2 * k + 1)});
      if (!times) return fail(times.error().message());
      client.max_concurrency = cap.value_or(0);
      const std::string label = "rate " + rate_word(rate) + ", concurrency " + (cap ? std::to_string(*cap) : std::string("unlimited"));
      std::unique_ptr<progress_bar> bar;
      if (!a.no_progress) bar = std::make_unique<progress_bar>(label, terminal);
      run_progress last;
      auto outcome = run_requests(
          client, plan_of(*items, *times),
          [&](size_t i, std::span<const request_record> recs) { return request_body(body, *items, i, recs); },
          [&](const run_progress& p) {
            last = p;
            if (bar) bar->update(p);
          });
      if (bar) bar->finish(last);
      run_result r;
      r.request_rate = rate;
      r.burstiness = a.burstiness;
      r.max_concurrency = cap;
      r.summary = summarize(outcome.records, outcome.duration_s, percentiles, *slo);
      r.records = std::move(outcome.records);
      runs.push_back(std::move(r));
      if (by_concurrency) x_values.push_back(cap ? std::to_string(*cap) : std::string("none"));
      else x_values.push_back(rate_word(rate));
    }
  }

  std::fputs(format_table(runs, percentiles, slo->any()).c_str(), stdout);
  std::fputs(format_errors(runs).c_str(), stdout);
  std::fflush(stdout);

  if (!a.json_path.empty()) {
    nlohmann::ordered_json j;
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y%m%d-%H%M%S", std::localtime(&now));
    j["date"] = date;
    j["base_url"] = base_url;
    j["endpoint"] = a.endpoint;
    j["model_id"] = model->name;
    j["tokenizer_id"] = tok->path;
    j["dataset"] = a.dataset;
    j["num_prompts"] = w.num_prompts;
    j["seed"] = w.seed;
    j["num_warmups"] = a.warmup;
    j["percentiles"] = percentiles;
    nlohmann::ordered_json goals = nlohmann::ordered_json::object();
    if (slo->ttft_ms) goals["ttft"] = *slo->ttft_ms;
    if (slo->tpot_ms) goals["tpot"] = *slo->tpot_ms;
    if (slo->e2el_ms) goals["e2el"] = *slo->e2el_ms;
    j["goodput"] = goals;
    j["runs"] = nlohmann::ordered_json::array();
    for (const auto& r : runs) j["runs"].push_back(run_json(r, percentiles, slo->any()));
    std::ofstream out(a.json_path);
    out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    if (!out) return fail("cannot write '" + a.json_path + "'");
  }
  if (!a.plot_path.empty()) {
    const std::string x_label = by_concurrency ? "max concurrency" : "request rate (req/s)";
    std::ofstream out(a.plot_path);
    out << plot_svg(runs, x_values, x_label, percentiles, "troupe bench: " + model->name + ", " + a.dataset + ", " + std::to_string(w.num_prompts) + " requests");
    if (!out) return fail("cannot write '" + a.plot_path + "'");
  }
  // Nothing completed in any run: there is nothing to measure, which scripts should notice.
  for (const auto& r : runs)
    if (r.summary.completed > 0) return 0;
  return 1;
}

}  // namespace

void add_bench(CLI::App& app) {
  auto a = std::make_shared<bench_args>();
  CLI::App* cmd = app.add_subcommand("bench", "load-test an OpenAI-compatible server (like vLLM's bench serve): throughput, TTFT, TPOT, ITL, goodput");
  workload_options& w = a->workload;
  cmd->add_option("--url,--base-url", a->url, "server base URL")->capture_default_str();
  cmd->add_option("--endpoint", a->endpoint, "/v1/completions (default) or /v1/chat/completions (default for multi-turn)");
  cmd->add_option("--model", a->model, "model name the server knows, or a local model path / NAME=PATH (names it as troupe serve does; its tokenizer counts tokens); default: the server's first model");
  cmd->add_option("--served-model-name", a->served_model_name, "model name to send, when --model is a local path named otherwise");
  cmd->add_option("--tokenizer", a->tokenizer, "model file or tokenizer (file or directory) that counts prompt tokens (default: --model's, else troupe serve's default model)");
  cmd->add_option("--dataset", a->dataset, "random, shared-prefix, multi-turn, or a JSON/JSONL file of ShareGPT conversations or {\"prompt\": ...} objects")->capture_default_str();
  cmd->add_option("--num-prompts", w.num_prompts, "requests per run (multi-turn: turns of all conversations)")->capture_default_str();
  cmd->add_option("--input-len,--random-input-len", w.input_len, "prompt tokens (random; each user turn of multi-turn)")->capture_default_str();
  cmd->add_option("--output-len,--random-output-len", a->output_len, "max_tokens of each request (default 128; a dataset file's own completion lengths)")->capture_default_str();
  cmd->add_option("--range-ratio,--random-range-ratio", w.range_ratio, "lengths drawn uniformly from [L(1-r), L(1+r)]")->capture_default_str();
  cmd->add_option("--prefix-len,--prefix-repetition-prefix-len", w.prefix_len, "shared-prefix: tokens of each group's prefix")->capture_default_str();
  cmd->add_option("--suffix-len,--prefix-repetition-suffix-len", w.suffix_len, "shared-prefix: tokens of each prompt's own suffix")->capture_default_str();
  cmd->add_option("--num-prefixes,--prefix-repetition-num-prefixes", w.num_prefixes, "shared-prefix: groups sharing a prefix")->capture_default_str();
  cmd->add_option("--turns", w.turns, "multi-turn: turns per conversation")->capture_default_str();
  cmd->add_option("--request-rate", a->request_rate, "requests per second (inf: all at once; with --max-concurrency a closed loop)")->capture_default_str();
  cmd->add_option("--rates", a->rates, "a sweep of request rates in one call, e.g. 1,2,4,inf")->delimiter(',');
  cmd->add_option("--burstiness", a->burstiness, "gamma shape of inter-arrival times: 1 Poisson, < 1 burstier, > 1 steadier")->capture_default_str();
  cmd->add_option("--max-concurrency", a->max_concurrency, "requests in flight at most; a list (1,16,64) sweeps it")->delimiter(',');
  cmd->add_option("--warmup,--num-warmups", a->warmup, "requests sent first and not counted; the run stops if all fail")->capture_default_str();
  cmd->add_option("--seed", w.seed, "seed of prompts and arrival times")->capture_default_str();
  cmd->add_option("--timeout", a->timeout_s, "seconds a request may take, send to last byte; then it fails")->capture_default_str();
  cmd->add_option("--goodput", a->goodput, "SLOs in ms for request_goodput: ttft:MS tpot:MS e2el:MS")->expected(1, 3);
  cmd->add_option("--metric-percentiles", a->metric_percentiles, "percentiles to report, e.g. 50,90,99")->delimiter(',')->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "sampling temperature to send (default: the server's)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "send ignore_eos (vLLM's extension, which troupe serve honours): every request generates --output-len tokens");
  cmd->add_flag("--no-progress,--disable-tqdm", a->no_progress, "no progress line on stderr");
  cmd->add_option("--json", a->json_path, "write the results (summary and per-request records per run) to FILE");
  cmd->add_option("--plot", a->plot_path, "write latency percentiles and throughput against rate or concurrency to FILE.svg");
  cmd->callback([a, cmd] {
    a->output_len_given = cmd->count("--output-len") > 0;
    a->temperature_given = cmd->count("--temperature") > 0;
    a->rates_given = cmd->count("--rates") > 0;
    if (a->rates_given && cmd->count("--request-rate") > 0) {
      exit_code() = fail("give --request-rate or --rates, not both");
      return;
    }
    exit_code() = run_bench(*a);
  });
}

}  // namespace troupe::cli
