// troupe serve: one process, CPU backend. Loads each model into a shard, puts a scheduler in front
// of each and a router in front of them, and answers the OpenAI-compatible API over HTTP.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/log.hpp"
#include "runtime/format/gguf.hpp"
#include "runtime/model/weights.hpp"
#include "tools/troupe/commands.hpp"

#if defined(TROUPE_HAVE_ACTORS)
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/gateway.hpp"
#include "actors/messages.hpp"
#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"
#endif

namespace troupe::cli {
namespace {

namespace fs = std::filesystem;

struct serve_args {
  std::vector<std::string> models;  ///< PATH or NAME=PATH
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  int threads = 0;
  size_t kv_mb = 256;
  int64_t max_num_seqs = 64;
  int64_t max_batched_tokens = 512;
  int http_threads = 2;
};

/// The model served when none is given: $TROUPE_MODEL, else the local model cache, else the
/// stories260K model of ../shared beside the checkout.
expected<std::string> default_model() {
  if (const char* env = std::getenv("TROUPE_MODEL"); env && *env) return std::string(env);
  std::vector<fs::path> candidates;
  if (const char* home = std::getenv("HOME"); home && *home)
    candidates.push_back(fs::path(home) / ".cache/troupe/models/stories260K/stories260K.gguf");
  candidates.push_back("../shared/models/stories260K/stories260K.gguf");
  for (const auto& c : candidates)
    if (fs::exists(c)) return c.string();
  return make_error(errc::not_found,
                    "no model given and no default found: set $TROUPE_MODEL, pass --model PATH, or put stories260K in "
                    "~/.cache/troupe/models/stories260K/ (downloading it needs `troupe pull`, not built yet)");
}

/// "name=path" or "path" (the name is the file stem, or the directory name).
std::pair<std::string, std::string> split_model_arg(const std::string& arg) {
  if (auto eq = arg.find('='); eq != std::string::npos && eq > 0 && arg.find('/') > eq) return {arg.substr(0, eq), arg.substr(eq + 1)};
  fs::path p(arg);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  const std::string name = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  return {name, arg};
}

#if defined(TROUPE_HAVE_ACTORS)
/// CAF scheduler threads: $TROUPE_CAF_THREADS, else 1. The actors only route small messages; the
/// cores belong to the shards' kernel threads, and an idle polling thread would take one from them.
size_t caf_threads() {
  if (const char* env = std::getenv("TROUPE_CAF_THREADS"); env && std::atoi(env) > 0) return static_cast<size_t>(std::atoi(env));
  return 1;
}

expected<std::shared_ptr<const tokenizer>> load_model_tokenizer(const std::string& path) {
  if (fs::path(path).extension() == ".gguf") {
    auto g = format::gguf_file::open(path);
    TROUPE_TRY(g);
    auto t = load_tokenizer(**g);
    TROUPE_TRY(t);
    return std::shared_ptr<const tokenizer>(std::move(*t));
  }
  auto w = load_model_weights(path);
  TROUPE_TRY(w);
  auto t = load_tokenizer(*w);
  TROUPE_TRY(t);
  return std::shared_ptr<const tokenizer>(std::move(*t));
}

int run_serve(const serve_args& a) {
  std::vector<std::string> model_args = a.models;
  if (model_args.empty()) {
    auto d = default_model();
    if (!d) {
      std::fprintf(stderr, "troupe serve: %s\n", d.error().what().c_str());
      return 1;
    }
    model_args.push_back(*d);
  }
  // SIGTERM and SIGINT are waited for below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  register_message_types(cfg);
  // CAF 0.17's idle scheduler threads poll for work, sleeping up to 10 ms between polls once idle for
  // a while; every hop of a decode step (scheduler -> shard -> scheduler -> request) could wait that
  // long. Sleep at most 100 us instead: a request's tokens then flow at the engine's pace, for a
  // negligible amount of idle polling.
  cfg.set("scheduler.max-threads", caf_threads());
  cfg.set("work-stealing.aggressive-poll-attempts", size_t{1});
  cfg.set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::microseconds(50)});
  cfg.set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::microseconds(100)});
  caf::actor_system sys{cfg};

  std::vector<replica_entry> replicas;
  std::vector<served_model> served;
  std::vector<caf::actor> to_stop;
  for (const auto& arg : model_args) {
    const auto [name, path] = split_model_arg(arg);
    engine_options eo;
    eo.model_path = path;
    eo.model.threads = a.threads;
    eo.kv.max_bytes = a.kv_mb << 20;
    eo.kv_full_contexts = a.max_num_seqs;  // room for many sequences, within the byte budget
    auto tok = load_model_tokenizer(path);
    if (!tok) {
      std::fprintf(stderr, "troupe serve: model '%s': %s\n", name.c_str(), tok.error().what().c_str());
      return 1;
    }
    auto shard = spawn_shard(sys, eo);
    if (!shard) {
      std::fprintf(stderr, "troupe serve: model '%s': %s\n", name.c_str(), shard.error().what().c_str());
      return 1;
    }
    scheduler_options so;
    so.policy.max_num_seqs = a.max_num_seqs;
    so.policy.max_num_batched_tokens = a.max_batched_tokens;
    auto sched = spawn_scheduler(sys, *shard, *tok, so);
    if (!sched) {
      std::fprintf(stderr, "troupe serve: model '%s': %s\n", name.c_str(), sched.error().what().c_str());
      return 1;
    }
    to_stop.push_back(caf::actor_cast<caf::actor>(*shard));  // stopped in reverse order
    to_stop.push_back(caf::actor_cast<caf::actor>(*sched));
    auto weights = load_model_weights(path);
    const int64_t ctx = weights ? weights->hp.context_length : 0;
    replicas.push_back(replica_entry{name, name + "/0", *sched});
    served.push_back(served_model{name, *tok, ctx});
    spdlog::info("serve: model '{}' from {}", name, path);
  }
  auto router = spawn_router(sys, replicas);
  to_stop.push_back(caf::actor_cast<caf::actor>(router));
  gateway_options go;
  go.http.host = a.host;
  go.http.port = a.port;
  go.http.threads = a.http_threads;
  auto gw = gateway::start(sys, router, served, go);
  if (!gw) {
    std::fprintf(stderr, "troupe serve: %s\n", gw.error().what().c_str());
    for (auto it = to_stop.rbegin(); it != to_stop.rend(); ++it) caf::anon_send_exit(*it, caf::exit_reason::user_shutdown);
    return 1;
  }
  (*gw)->set_ready(true);
  std::string names;
  for (const auto& s : served) names += (names.empty() ? "" : ", ") + s.name;
  std::fprintf(stderr, "troupe serve: listening on http://%s:%u (models: %s)\n", a.host.c_str(), (*gw)->port(), names.c_str());
  std::fflush(stderr);

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "troupe serve: %s received, draining in-flight requests\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*gw)->stop(std::chrono::seconds(30));
  gw->reset();
  // Front to back (router, then schedulers, then shards), so nobody reports a peer's exit as a failure.
  for (auto it = to_stop.rbegin(); it != to_stop.rend(); ++it) caf::anon_send_exit(*it, caf::exit_reason::user_shutdown);
  to_stop.clear();
  replicas.clear();
  return 0;
}
#else
int run_serve(const serve_args&) {
  std::fprintf(stderr, "troupe serve: this build has no actor runtime (CAF was not found at build time)\n");
  return 1;
}
#endif

}  // namespace

void add_serve(CLI::App& app) {
  auto args = std::make_shared<serve_args>();
  CLI::App* cmd = app.add_subcommand("serve", "serve models over the OpenAI-compatible HTTP API");
  cmd->add_option("--model,-m", args->models, "model to serve: PATH or NAME=PATH (repeat for several; default: $TROUPE_MODEL or stories260K)");
  cmd->add_option("--host", args->host, "address to bind")->capture_default_str();
  cmd->add_option("--port", args->port, "port (0: any free port, printed on stderr)")->capture_default_str();
  cmd->add_option("--threads,-t", args->threads, "CPU threads per model (default: all cores)");
  cmd->add_option("--kv-mb", args->kv_mb, "KV cache budget per model in MiB")->capture_default_str();
  cmd->add_option("--max-num-seqs", args->max_num_seqs, "sequences in a batch at most")->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", args->max_batched_tokens, "tokens per scheduler step at most")->capture_default_str();
  cmd->callback([args] { exit_code() = run_serve(*args); });
}

}  // namespace troupe::cli
