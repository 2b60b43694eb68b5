#include "actors/embedded.hpp"

#include <caf/all.hpp>

#include <atomic>

#include "actors/messages.hpp"
#include "actors/topology.hpp"

namespace troupe {

struct embedded_runtime::impl {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  local_topology topo;
  std::atomic<uint64_t> next_id{1ull << 62};  // far from ids a gateway in the same process would use

  ~impl() {
    topo.shutdown();
    sys.reset();  // waits for the actors to finish
  }

  expected<serving_request> make_request(std::string_view model, std::string_view prompt, const generate_options& opts) {
    const served_model* m = nullptr;
    for (const auto& s : topo.models)
      if (s.name == model) m = &s;
    if (!m) return make_error(errc::not_found, "no model named '" + std::string(model) + "' is loaded");
    TROUPE_TRY(opts.sampling.validate());
    serving_request r;
    r.id = next_id.fetch_add(1);
    r.prompt = opts.add_bos ? m->tok->encode_prompt(prompt) : m->tok->encode(prompt);
    if (r.prompt.empty()) return make_error(errc::invalid_argument, "the prompt has no tokens");
    if (static_cast<int64_t>(r.prompt.size()) >= m->context_length)
      return make_error(errc::context_overflow, "the prompt has " + std::to_string(r.prompt.size()) +
                                                    " tokens; the context length is " + std::to_string(m->context_length));
    r.params = opts.sampling;
    r.max_tokens = opts.max_tokens;
    r.stop = opts.stop;
    return r;
  }
};

namespace {

/// A stream backed by a scoped actor on the caller's thread: the router sends it the events.
class actor_stream final : public token_stream {
 public:
  actor_stream(caf::actor_system& sys, router_actor router, std::string model, serving_request req)
      : self_(sys), router_(std::move(router)), id_(req.id) {
    self_->send(router_, std::move(model), std::move(req), caf::actor_cast<caf::actor>(self_));
  }
  ~actor_stream() override {
    if (!done_) cancel();
  }
  std::optional<token_event> next() override {
    if (done_) return std::nullopt;
    std::optional<token_event> out;
    self_->receive([&](token_event& ev) { out = std::move(ev); },
                   caf::after(std::chrono::minutes(10)) >> [&] {
                     token_event ev;
                     ev.id = id_;
                     ev.finish = finish_kind::error;
                     ev.error = "no event for 10 minutes";
                     out = std::move(ev);
                   });
    if (out->finish != finish_kind::none) done_ = true;
    return out;
  }
  void cancel() override {
    if (!done_) self_->send(router_, cancel_atom_v, id_);
  }

 private:
  caf::scoped_actor self_;
  router_actor router_;
  request_id id_;
  bool done_ = false;
};

}  // namespace

embedded_runtime::embedded_runtime(std::unique_ptr<impl> impl) : impl_(std::move(impl)) {}
embedded_runtime::~embedded_runtime() = default;

expected<std::unique_ptr<embedded_runtime>> embedded_runtime::start(const serve_config& cfg) {
  if (cfg.models.empty()) return make_error(errc::invalid_argument, "embedded_runtime: no models configured");
  auto im = std::make_unique<impl>();
  configure_actor_system(im->cfg);
  im->sys = std::make_unique<caf::actor_system>(im->cfg);
  auto topo = spawn_topology(*im->sys, cfg);
  TROUPE_TRY(topo);
  im->topo = std::move(*topo);
  return std::unique_ptr<embedded_runtime>(new embedded_runtime(std::move(im)));
}

std::vector<std::string> embedded_runtime::models() const {
  std::vector<std::string> names;
  for (const auto& m : impl_->topo.models) names.push_back(m.name);
  return names;
}

expected<std::unique_ptr<token_stream>> embedded_runtime::open_stream(std::string_view model, std::string_view prompt,
                                                                      const generate_options& opts) {
  auto req = impl_->make_request(model, prompt, opts);
  TROUPE_TRY(req);
  return std::unique_ptr<token_stream>(
      std::make_unique<actor_stream>(*impl_->sys, impl_->topo.router, std::string(model), std::move(*req)));
}

expected<generation> embedded_runtime::generate(std::string_view model, std::string_view prompt,
                                                const generate_options& opts,
                                                const std::function<bool(std::string_view, int32_t)>& on_token) {
  auto stream = open_stream(model, prompt, opts);
  TROUPE_TRY(stream);
  generation out;
  bool cancelled = false;
  while (auto ev = (*stream)->next()) {
    if (ev->finish == finish_kind::error) return make_error(errc::internal, "generation failed: " + ev->error);
    if (ev->token >= 0 && !ev->token_is_stop) out.tokens.push_back(ev->token);
    out.text += ev->text;
    if (on_token && !cancelled && (!ev->text.empty() || ev->token >= 0) && ev->finish == finish_kind::none &&
        !on_token(ev->text, ev->token)) {
      cancelled = true;
      (*stream)->cancel();
    }
    if (ev->finish != finish_kind::none) {
      if (on_token && !ev->text.empty() && !cancelled) on_token(ev->text, ev->token);
      out.finish_reason = to_string(ev->finish);
      out.usage = ev->usage;
    }
  }
  return out;
}

}  // namespace troupe
