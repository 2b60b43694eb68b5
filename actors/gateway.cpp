#include "actors/gateway.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <map>
#include <mutex>

#include "runtime/api/prometheus.hpp"
#include "runtime/core/log.hpp"
#include "runtime/tokenizer/chat_template.hpp"

namespace troupe {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

http_response json_response(int status, std::string body) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http_response error_response(const api_error& e) { return json_response(e.status, e.body()); }

/// Latency buckets in seconds, as vLLM's histograms use roughly.
std::vector<double> latency_bounds() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}

/// Per-model request counters and latency histograms, updated by request actors.
class gateway_metrics {
 public:
  void record(const std::string& model, std::string_view finish, int64_t prompt_tokens, int64_t gen_tokens,
              double ttft, double e2e, double tpot) {
    std::lock_guard lock(mu_);
    auto& m = models_[model];
    if (m.ttft.bounds.empty()) m.ttft = m.e2e = m.tpot = histogram_data(latency_bounds());
    m.finished[std::string(finish)] += 1;
    m.prompt_tokens += prompt_tokens;
    m.generation_tokens += gen_tokens;
    if (ttft >= 0) m.ttft.observe(ttft);
    m.e2e.observe(e2e);
    if (tpot >= 0) m.tpot.observe(tpot);
  }
  void write(prometheus_writer& w) const {
    std::lock_guard lock(mu_);
    for (const auto& [name, m] : models_) {
      const metric_labels model{{"model", name}};
      for (const auto& [reason, n] : m.finished)
        w.counter("troupe_requests_total", "Finished requests by model and finish reason",
                  static_cast<double>(n), {{"model", name}, {"finish_reason", reason}});
      w.counter("troupe_prompt_tokens_total", "Prompt tokens processed", static_cast<double>(m.prompt_tokens), model);
      w.counter("troupe_generation_tokens_total", "Tokens generated", static_cast<double>(m.generation_tokens), model);
      w.histogram("troupe_time_to_first_token_seconds", "Time to first token", m.ttft, model);
      w.histogram("troupe_time_per_output_token_seconds", "Time per output token after the first", m.tpot, model);
      w.histogram("troupe_e2e_request_latency_seconds", "End-to-end request latency", m.e2e, model);
    }
  }

 private:
  struct per_model {
    std::map<std::string, int64_t> finished;
    int64_t prompt_tokens = 0, generation_tokens = 0;
    histogram_data ttft, e2e, tpot;
  };
  mutable std::mutex mu_;
  std::map<std::string, per_model> models_;
};

/// A model's tokenizer plus how its chat template renders.
struct model_entry {
  served_model model;
  chat_format chat = chat_format::none;
  chat_options chat_opts;
};

/// Everything one HTTP generation request needs while its sequences run.
struct request_state {
  std::shared_ptr<response_writer> writer;
  const model_entry* model = nullptr;
  std::shared_ptr<gateway_metrics> metrics;
  api_endpoint endpoint = api_endpoint::chat_completions;
  bool stream = false;
  bool logprobs = false;
  response_meta meta;
  std::vector<serving_request> requests;       ///< one per choice
  std::vector<int64_t> prompt_of_choice;       ///< which prompt each choice continues
  std::vector<int64_t> prompt_tokens;          ///< per prompt
  std::map<request_id, int32_t> choice_of;
  std::vector<choice_result> choices;
  std::vector<bool> done;
  int32_t n_done = 0;
  int64_t completion_tokens = 0;
  std::optional<stream_encoder> encoder;
  clock_type::time_point start = clock_type::now();
  std::optional<clock_type::time_point> first_token;
  bool finished = false;
};

token_logprobs to_logprobs(const tokenizer& tok, const token_event& ev) {
  token_logprobs lp;
  lp.token = tok.token_bytes(ev.token);
  lp.logprob = ev.logprob;
  for (const auto& t : ev.top) lp.top.push_back(logprob_candidate{tok.token_bytes(t.id), t.logprob});
  return lp;
}

finish_reason to_finish_reason(finish_kind k) { return k == finish_kind::length ? finish_reason::length : finish_reason::stop; }

}  // namespace

struct gateway::impl {
  caf::actor_system& sys;
  router_actor router;
  std::map<std::string, model_entry, std::less<>> models;
  gateway_options opts;
  std::unique_ptr<http_server> server;
  std::atomic<bool> ready{false};
  std::atomic<uint64_t> next_id{1};
  std::shared_ptr<gateway_metrics> metrics = std::make_shared<gateway_metrics>();
  int64_t created = static_cast<int64_t>(std::time(nullptr));
  /// Decoding, chat rendering and tokenizing run here, not on the HTTP threads: a large prompt
  /// must not hold up /health or other clients' responses.
  std::unique_ptr<boost::asio::thread_pool> prepare_pool;

  impl(caf::actor_system& s, router_actor r) : sys(s), router(std::move(r)) {}

  void handle(http_request& req, std::shared_ptr<response_writer> w);
  /// Hands a generation request to prepare_pool.
  void post_generate(http_request& req, std::shared_ptr<response_writer> w, api_endpoint ep);
  void handle_generate(const http_request& req, std::shared_ptr<response_writer> w, api_endpoint ep);
  /// The prompt's ids, or the 400 for a prompt that is sure not to fit before any tokenizing.
  api_result<std::vector<int32_t>> tokenize_prompt(const model_entry& m, std::string_view text, bool parse_special,
                                                   std::optional<int32_t> max_tokens, const char* param) const;
  void handle_metrics(std::shared_ptr<response_writer> w);
  void run_request(std::shared_ptr<request_state> st);
};

void gateway::impl::handle(http_request& req, std::shared_ptr<response_writer> w) {
  using handler = void (*)(impl&, http_request&, std::shared_ptr<response_writer>);
  struct route {
    std::string_view path, method;
    handler run;
  };
  // One table answers both the request and, for a known path with the wrong method, 405.
  static constexpr route routes[] = {
      {"/health", "GET", [](impl&, http_request&, std::shared_ptr<response_writer> w) {
         w->send(json_response(200, R"({"status":"ok"})"));
       }},
      {"/ready", "GET", [](impl& g, http_request&, std::shared_ptr<response_writer> w) {
         g.ready ? w->send(json_response(200, R"({"status":"ready"})"))
                 : w->send(error_response(not_ready("models are still loading")));
       }},
      {"/v1/models", "GET", [](impl& g, http_request&, std::shared_ptr<response_writer> w) {
         std::vector<model_card> cards;
         for (const auto& [name, m] : g.models) cards.push_back(model_card{name, g.created, "troupe", m.model.context_length});
         w->send(json_response(200, build_models_list(cards)));
       }},
      {"/metrics", "GET", [](impl& g, http_request&, std::shared_ptr<response_writer> w) { g.handle_metrics(std::move(w)); }},
      {"/v1/chat/completions", "POST", [](impl& g, http_request& r, std::shared_ptr<response_writer> w) {
         g.post_generate(r, std::move(w), api_endpoint::chat_completions);
       }},
      {"/v1/completions", "POST", [](impl& g, http_request& r, std::shared_ptr<response_writer> w) {
         g.post_generate(r, std::move(w), api_endpoint::completions);
       }},
  };
  const std::string_view path = req.path();
  bool known = false;
  for (const route& r : routes) {
    if (r.path != path) continue;
    if (r.method == req.method) return r.run(*this, req, std::move(w));
    known = true;
  }
  api_error e = invalid_request(known ? "method " + req.method + " is not allowed on " + std::string(path)
                                      : "no such endpoint: " + std::string(path),
                                {}, known ? "method_not_allowed" : "not_found");
  e.status = known ? 405 : 404;
  w->send(error_response(e));
}

void gateway::impl::post_generate(http_request& req, std::shared_ptr<response_writer> w, api_endpoint ep) {
  boost::asio::post(*prepare_pool, [this, req = std::move(req), w = std::move(w), ep]() mutable {
    // stop() joins the pool before this impl goes away.
    if (w->disconnected()) return;  // the client gave up while the request waited its turn
    try {
      handle_generate(req, w, ep);
    } catch (const std::exception& e) {
      w->send(error_response(internal_error(std::string("the request failed: ") + e.what())));
    }
  });
}

api_result<std::vector<int32_t>> gateway::impl::tokenize_prompt(const model_entry& m, std::string_view text,
                                                                bool parse_special, std::optional<int32_t> max_tokens,
                                                                const char* param) const {
  const tokenizer& tok = *m.model.tok;
  const int64_t at_least = (tok.add_bos() && tok.bos_id() >= 0 ? 1 : 0) + tok.min_token_count(text);
  if (at_least + std::max<int64_t>(max_tokens.value_or(0), 1) > m.model.context_length)
    return prompt_exceeds_context(at_least, text.size(), m.model.context_length, param);
  return tok.encode_prompt(text, parse_special);
}

void gateway::impl::handle_generate(const http_request& req, std::shared_ptr<response_writer> w, api_endpoint ep) {
  const bool chat = ep == api_endpoint::chat_completions;
  auto parsed = chat ? parse_chat_request(req.body, opts.limits) : parse_completion_request(req.body, opts.limits);
  if (!parsed) return w->send(error_response(parsed.error()));
  generation_request& g = parsed.value();
  if (!ready) return w->send(error_response(not_ready("models are still loading")));
  auto it = models.find(g.model);
  if (it == models.end()) return w->send(error_response(model_not_found(g.model)));
  const model_entry& m = it->second;
  const tokenizer& tok = *m.model.tok;

  // Prompts as token ids.
  std::vector<std::vector<int32_t>> prompts;
  if (chat) {
    auto text = render_chat(m.chat, g.messages, true, m.chat_opts);
    if (!text) return w->send(error_response(invalid_request(text.error().message(), "messages")));
    auto ids = tokenize_prompt(m, *text, /*parse_special=*/m.chat != chat_format::none, g.max_tokens, "messages");
    if (!ids) return w->send(error_response(ids.error()));
    prompts.push_back(std::move(ids.value()));
  } else {
    for (const auto& p : g.prompts) {
      if (!p.is_tokens) {
        auto ids = tokenize_prompt(m, p.text, false, g.max_tokens, "prompt");
        if (!ids) return w->send(error_response(ids.error()));
        prompts.push_back(std::move(ids.value()));
        continue;
      }
      for (int32_t id : p.token_ids)
        if (id < 0 || id >= tok.n_vocab())
          return w->send(error_response(invalid_request("prompt token id " + std::to_string(id) +
                                                            " is outside the vocabulary (" + std::to_string(tok.n_vocab()) + ")",
                                                        "prompt")));
      prompts.push_back(p.token_ids);
    }
  }

  auto st = std::make_shared<request_state>();
  st->writer = w;
  st->model = &m;
  st->metrics = metrics;
  st->endpoint = ep;
  st->stream = g.stream;
  st->logprobs = g.logprobs;
  st->meta = response_meta{make_response_id(chat ? "chatcmpl-" : "cmpl-"), g.model, static_cast<int64_t>(std::time(nullptr))};
  int32_t index = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    if (prompts[p].empty())
      return w->send(error_response(invalid_request("the prompt is empty", chat ? "messages" : "prompt")));
    auto budget = fit_context(static_cast<int64_t>(prompts[p].size()), g.max_tokens, m.model.context_length,
                              chat ? "messages" : "prompt");
    if (!budget) return w->send(error_response(budget.error()));
    st->prompt_tokens.push_back(static_cast<int64_t>(prompts[p].size()));
    const size_t first_choice = st->requests.size();
    for (int32_t j = 0; j < g.n; ++j, ++index) {
      serving_request r;
      r.id = next_id.fetch_add(1);
      // The other choices share the first one's prompt KV (copy-on-write) on its replica.
      if (j > 0) r.fork_of = st->requests[first_choice].id;
      r.prompt = prompts[p];
      r.params = g.sampling;
      if (r.params.seed && g.n > 1) r.params.seed = *r.params.seed + static_cast<uint64_t>(j);  // n seeded choices differ
      r.max_tokens = budget.value();
      r.stop = g.stop;
      r.ignore_eos = g.ignore_eos;
      r.cache_salt = g.cache_salt;
      st->choice_of[r.id] = index;
      st->requests.push_back(std::move(r));
      st->prompt_of_choice.push_back(static_cast<int64_t>(p));
      choice_result c;
      c.index = index;
      if (g.logprobs) c.logprobs.emplace();
      st->choices.push_back(std::move(c));
    }
  }
  st->done.assign(st->choices.size(), false);
  if (g.stream) {
    st->encoder.emplace(ep, st->meta, static_cast<int32_t>(st->choices.size()), g.include_usage);
    w->start_stream(200);
  }
  run_request(std::move(st));
}

void gateway::impl::run_request(std::shared_ptr<request_state> st) {
  router_actor router_hdl = router;
  auto self_hdl = sys.spawn([st, router_hdl](caf::event_based_actor* self) -> caf::behavior {
    const caf::actor me = caf::actor_cast<caf::actor>(self);
    for (const auto& r : st->requests) self->send(router_hdl, st->model->model.name, r, me);
    auto cancel_all = [self, st, router_hdl] {
      for (const auto& r : st->requests) self->send(router_hdl, cancel_atom_v, r.id);
    };
    auto finish_request = [self, st](std::string_view reason) {
      st->finished = true;
      const auto now = clock_type::now();
      int64_t prompt = 0;
      for (int64_t n : st->prompt_tokens) prompt += n;
      const double ttft = st->first_token ? seconds_between(st->start, *st->first_token) : -1.0;
      const double tpot = st->first_token && st->completion_tokens > 1
                              ? seconds_between(*st->first_token, now) / static_cast<double>(st->completion_tokens - 1)
                              : -1.0;
      st->metrics->record(st->model->model.name, reason, prompt, st->completion_tokens, ttft,
                          seconds_between(st->start, now), tpot);
      self->quit();
    };
    return {
        [=](token_event& ev) {
          if (st->finished) return;
          auto it = st->choice_of.find(ev.id);
          if (it == st->choice_of.end()) return;
          const int32_t idx = it->second;
          if (ev.finish == finish_kind::error) {
            const api_error err = internal_error(ev.error.empty() ? "generation failed" : ev.error);
            if (st->stream) {
              st->writer->send_event(stream_error_payload(err));
              st->writer->close();
            } else {
              st->writer->send(error_response(err));
            }
            cancel_all();
            finish_request("error");
            return;
          }
          if (ev.finish == finish_kind::cancelled) {  // the client went away, or the server drains
            finish_request("cancelled");
            return;
          }
          const tokenizer& tok = *st->model->model.tok;
          const bool real_token = ev.token >= 0 && !ev.token_is_stop;
          if (real_token && !st->first_token) st->first_token = clock_type::now();
          std::vector<token_logprobs> lps;
          if (st->logprobs && real_token) lps.push_back(to_logprobs(tok, ev));
          choice_result& c = st->choices[static_cast<size_t>(idx)];
          if (st->stream) {
            if (!ev.text.empty() || !lps.empty())
              for (auto& payload : st->encoder->on_text(idx, ev.text, lps, st->logprobs)) st->writer->send_event(std::move(payload));
          } else {
            c.text += ev.text;
            if (c.logprobs) c.logprobs->insert(c.logprobs->end(), lps.begin(), lps.end());
          }
          if (ev.finish == finish_kind::none) return;
          // This choice is complete.
          st->done[static_cast<size_t>(idx)] = true;
          ++st->n_done;
          st->completion_tokens += ev.usage.completion_tokens;
          c.finish = to_finish_reason(ev.finish);
          if (st->stream)
            for (auto& payload : st->encoder->on_finish(idx, c.finish)) st->writer->send_event(std::move(payload));
          if (st->n_done < static_cast<int32_t>(st->choices.size())) return;
          usage_info usage{0, st->completion_tokens};
          for (int64_t n : st->prompt_tokens) usage.prompt_tokens += n;
          if (st->stream) {
            for (auto& payload : st->encoder->on_end(usage)) st->writer->send_event(std::move(payload));
            st->writer->close();
          } else {
            const std::string body = st->endpoint == api_endpoint::chat_completions
                                         ? build_chat_completion(st->meta, st->choices, usage)
                                         : build_text_completion(st->meta, st->choices, usage);
            st->writer->send(json_response(200, body));
          }
          finish_request(to_string(c.finish));
        },
        [=](cancel_atom) {
          if (st->finished) return;
          cancel_all();
          finish_request("cancelled");
        },
    };
  });
  // A client that goes away cancels its sequences (their blocks return to the pool at once).
  st->writer->on_disconnect([self_hdl] { caf::anon_send(self_hdl, cancel_atom_v); });
}

void gateway::impl::handle_metrics(std::shared_ptr<response_writer> w) {
  router_actor router_hdl = router;
  auto metrics_copy = metrics;
  sys.spawn([w, router_hdl, metrics_copy](caf::event_based_actor* self) {
    self->request(router_hdl, std::chrono::seconds(5), stats_atom_v)
        .then(
            [=](const std::vector<scheduler_stats>& all) {
              prometheus_writer out;
              metrics_copy->write(out);
              // One series per model: the replicas of a model are summed.
              std::map<std::string, scheduler_stats> by_model;
              for (const auto& s : all) by_model[s.model] += s;
              for (const auto& [name, sum] : by_model) {
                const metric_labels model{{"model", name}};
                out.gauge("troupe_queue_depth", "Requests waiting to be scheduled", static_cast<double>(sum.waiting), model);
                out.gauge("troupe_running_sequences", "Sequences in the running batch", static_cast<double>(sum.running), model);
                out.gauge("troupe_kv_blocks_total", "KV cache blocks in the pool", static_cast<double>(sum.kv.blocks_total), model);
                out.gauge("troupe_kv_blocks_used", "KV cache blocks referenced by sequences", static_cast<double>(sum.kv.blocks_used), model);
                out.gauge("troupe_kv_blocks_free", "KV cache blocks free (cached prefixes included)", static_cast<double>(sum.kv.blocks_free), model);
                out.gauge("troupe_kv_blocks_cached", "Free KV blocks still holding a cached prefix", static_cast<double>(sum.kv.blocks_cached), model);
                out.counter("troupe_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache",
                            static_cast<double>(sum.kv.prefix_query_tokens), model);
                out.counter("troupe_prefix_cache_hits_total", "Prompt tokens found in the prefix cache",
                            static_cast<double>(sum.kv.prefix_hit_tokens), model);
                out.gauge("troupe_prefix_cache_hit_rate", "Prefix cache hits over queries (tokens)",
                          sum.kv.prefix_query_tokens ? static_cast<double>(sum.kv.prefix_hit_tokens) / static_cast<double>(sum.kv.prefix_query_tokens) : 0.0,
                          model);
                out.counter("troupe_preemptions_total", "Sequences preempted for lack of KV blocks", static_cast<double>(sum.preemptions), model);
              }
              // One series per replica: whether the router sends it requests, and how many it sent.
              for (const auto& s : all) {
                const metric_labels replica{{"model", s.model}, {"replica", s.replica}};
                out.gauge("troupe_replica_up", "1 while the router routes requests to the replica", s.up ? 1.0 : 0.0, replica);
                out.counter("troupe_replica_requests_total", "Requests the router sent to the replica",
                            static_cast<double>(s.routed), replica);
              }
              http_response r;
              r.body = out.text();
              r.content_type = std::string(prometheus_writer::content_type);
              w->send(std::move(r));
            },
            [=](caf::error& e) { w->send(error_response(internal_error("metrics: " + to_string(e)))); });
  });
}

gateway::gateway(std::shared_ptr<impl> impl) : impl_(std::move(impl)) {}
gateway::~gateway() { stop(std::chrono::seconds(5)); }

expected<std::unique_ptr<gateway>> gateway::start(caf::actor_system& sys, router_actor router,
                                                  std::vector<served_model> models, gateway_options opts) {
  auto im = std::make_shared<impl>(sys, std::move(router));
  im->opts = opts;
  for (auto& m : models) {
    model_entry e;
    const tokenizer& tok = *m.tok;
    e.chat = detect_chat_format(tok.chat_template(), [&](std::string_view s) {
      const auto ids = tok.encode(s, true);
      return ids.size() == 1 && tok.is_special(ids[0]);
    });
    e.chat_opts = chat_options_from_template(tok.chat_template());
    (void)tok.max_token_bytes();  // a scan of the vocabulary, done here rather than in the first request
    e.model = std::move(m);
    const std::string name = e.model.name;
    im->models.emplace(name, std::move(e));
  }
  http_server_options http = opts.http;
  http.error_response = [limit = http.max_body_bytes](int status, std::string message) {
    api_error e = status == 413 ? body_too_large(limit) : invalid_request(std::move(message), {}, {});
    e.status = status;
    if (status >= 500) e.type = "server_error";
    return error_response(e);
  };
  std::weak_ptr<impl> weak = im;
  im->prepare_pool = std::make_unique<boost::asio::thread_pool>(static_cast<size_t>(std::max(1, opts.prepare_threads)));
  auto server = http_server::start(http, [weak](http_request& req, std::shared_ptr<response_writer> w) {
    if (auto s = weak.lock()) s->handle(req, std::move(w));
  });
  TROUPE_TRY(server);
  im->server = std::move(*server);
  return std::unique_ptr<gateway>(new gateway(std::move(im)));
}

uint16_t gateway::port() const noexcept { return impl_->server ? impl_->server->port() : 0; }
void gateway::set_ready(bool ready) noexcept { impl_->ready = ready; }
void gateway::stop(std::chrono::milliseconds drain) {
  impl_->ready = false;
  if (impl_->server) impl_->server->stop(drain);
  // After the server: no new work comes in; what is queued finishes (its writers are inert now).
  if (impl_->prepare_pool) impl_->prepare_pool->join();
}

}  // namespace troupe
