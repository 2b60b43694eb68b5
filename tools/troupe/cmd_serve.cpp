// troupe serve: one process, CPU backend. Loads each model into a shard, puts a scheduler in front
// of each and a router in front of them, and answers the OpenAI-compatible API over HTTP.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/config/model_header.hpp"
#include "runtime/config/serve_config.hpp"
#include "runtime/core/log.hpp"
#include "runtime/hub/pull.hpp"
#include "tools/troupe/commands.hpp"

#if defined(TROUPE_HAVE_ACTORS)
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/gateway.hpp"
#include "actors/topology.hpp"
#endif

namespace troupe::cli {
namespace {

namespace fs = std::filesystem;

struct serve_args {
  std::vector<std::string> models;  ///< PATH or NAME=PATH
  std::string config;               ///< YAML file (deploy/troupe.yaml shows every key)
  std::string host = "127.0.0.1";
  int port = 8000;
  bool host_given = false, port_given = false;
  std::string routing;              ///< --routing: the router's strategy, over the config's
  model_config model_defaults;      ///< settings of the --model entries
  bool check = false;               ///< --check: validate the config and the model files, then exit
};

}  // namespace

// default_model and split_model_arg are shared with `troupe bench` (commands.hpp).

/// Where the default model is published: llama.cpp's copy of stories260K on the Hugging Face hub.
constexpr const char* default_model_hub_path = "hf:ggml-org/models-moved/tinyllamas/stories260K.gguf";

/// The model served when none is given: $TROUPE_MODEL, else stories260K placed in the local model
/// cache by hand, else from ../shared beside the checkout, else the hub path (the cached download,
/// fetched on first use; without a network that is a clear error).
expected<std::string> default_model() {
  if (const char* env = std::getenv("TROUPE_MODEL"); env && *env) return std::string(env);
  for (const fs::path& c : {model_cache_dir(pull_options{}) / "stories260K/stories260K.gguf",
                            fs::path("../shared/models/stories260K/stories260K.gguf")})
    if (fs::exists(c)) return c.string();
  return std::string(default_model_hub_path);
}

/// "name=path" or "path" (the name is the file stem, or the directory name).
std::pair<std::string, std::string> split_model_arg(const std::string& arg) {
  if (auto eq = arg.find('='); eq != std::string::npos && eq > 0 && arg.find('/') > eq) return {arg.substr(0, eq), arg.substr(eq + 1)};
  fs::path p(arg);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  const std::string name = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  return {name, arg};
}

namespace {

#if defined(TROUPE_HAVE_ACTORS)
/// Where model i of cfg came from, for errors: (the config file, "models[i].") or ("--model NAME", "").
std::pair<std::string, std::string> model_origin(const serve_args& a, const serve_config& cfg, size_t i) {
  if (!a.config.empty() && i < cfg.models.size() - a.models.size()) return {a.config, "models[" + std::to_string(i) + "]."};
  return {"troupe serve --model " + cfg.models[i].name, ""};
}

/// The models and server settings: the config file's, then the --model entries.
expected<serve_config> resolve_config(const serve_args& a) {
  serve_config cfg;
  if (!a.config.empty()) {
    auto loaded = load_serve_config(a.config);
    TROUPE_TRY(loaded);
    cfg = std::move(*loaded);
  }
  if (a.host_given || a.config.empty()) cfg.server.host = a.host;
  if (a.port_given || a.config.empty()) cfg.server.port = a.port;
  if (!a.routing.empty()) cfg.routing.strategy = a.routing;
  std::vector<std::string> model_args = a.models;
  if (model_args.empty() && cfg.models.empty()) {
    auto d = default_model();
    TROUPE_TRY(d);
    model_args.push_back(*d);
  }
  for (const auto& arg : model_args) {
    model_config m = a.model_defaults;
    std::tie(m.name, m.path) = split_model_arg(arg);
    for (const auto& other : cfg.models)
      if (other.name == m.name) return make_error(errc::invalid_argument, "model name '" + m.name + "' is given twice");
    cfg.models.push_back(std::move(m));
  }
  // A KV budget beyond this machine's memory cannot be meant (the engine would cap it silently).
  for (size_t i = 0; i < cfg.models.size(); ++i) {
    const auto [origin, where] = model_origin(a, cfg, i);
    TROUPE_TRY(check_kv_memory(cfg.models[i], origin, where, physical_memory_bytes()));
  }
  return cfg;
}

/// --check: every model's file header too (and kv_blocks by its block size), then what would run.
int check_serve(const serve_args& a, const serve_config& cfg) {
  for (size_t i = 0; i < cfg.models.size(); ++i) {
    const model_config& m = cfg.models[i];
    const auto [origin, where] = model_origin(a, cfg, i);
    auto h = read_model_header(m, origin, where);
    status st = h ? check_kv_memory(m, origin, where, physical_memory_bytes(), kv_block_bytes(h->hp)) : status{unexpected{h.error()}};
    if (!st) {
      std::fprintf(stderr, "troupe serve: %s\n", st.error().what().c_str());
      return 1;
    }
    std::printf("model %s: %s (%lld layers, %lld heads, %lld KV heads), %d replica%s on %s\n", m.name.c_str(), m.path.c_str(),
                static_cast<long long>(h->hp.n_layers), static_cast<long long>(h->hp.n_heads),
                static_cast<long long>(h->hp.n_kv_heads), m.replicas, m.replicas == 1 ? "" : "s", m.device.c_str());
  }
  std::printf("server: http://%s:%d\n", cfg.server.host.c_str(), cfg.server.port);
  return 0;
}

int run_serve(const serve_args& a) {
  auto resolved = resolve_config(a);
  if (!resolved) {
    std::fprintf(stderr, "troupe serve: %s\n", resolved.error().what().c_str());
    return 1;
  }
  const serve_config& config = *resolved;
  if (a.check) return check_serve(a, config);
  stop_signals signals;  // before any thread starts

  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  auto topo = spawn_topology(sys, config);
  if (!topo) {
    std::fprintf(stderr, "troupe serve: %s\n", topo.error().what().c_str());
    return 1;
  }
  gateway_options go;
  go.http.host = config.server.host;
  go.http.port = static_cast<uint16_t>(config.server.port);
  go.http.threads = config.server.http_threads;
  auto gw = gateway::start(sys, topo->router, topo->models, go);
  if (!gw) {
    std::fprintf(stderr, "troupe serve: %s\n", gw.error().what().c_str());
    topo->shutdown();
    return 1;
  }
  (*gw)->set_ready(true);
  std::string names;
  for (const auto& m : topo->models) names += (names.empty() ? "" : ", ") + m.name;
  std::fprintf(stderr, "troupe serve: listening on http://%s:%u (models: %s)\n", config.server.host.c_str(), (*gw)->port(), names.c_str());
  std::fflush(stderr);

  std::fprintf(stderr, "troupe serve: %s received, draining in-flight requests\n", signals.wait());
  (*gw)->stop(std::chrono::seconds(30));
  gw->reset();
  topo->shutdown();
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
  cmd->add_option("--config,-c", args->config, "YAML config: server settings and models (see deploy/troupe.yaml)");
  cmd->add_flag("--check", args->check, "check the config and each model file's header, print what would be served, then exit");
  cmd->add_option("--host", args->host, "address to bind (overrides the config)")->capture_default_str();
  cmd->add_option("--port", args->port, "port, 0: any free port, printed on stderr (overrides the config)")->capture_default_str()->check(CLI::Range(0, 65535));
  std::vector<std::string> strategies(routing_strategy_names().begin(), routing_strategy_names().end());
  cmd->add_option("--routing", args->routing, "how requests spread over replicas: " + routing_strategy_list() +
                                                  " (default: the config's, else chwbl)")
      ->check(CLI::IsMember(strategies));
  model_config& d = args->model_defaults;
  cmd->add_option("--threads,-t", d.threads, "CPU threads per replica of a --model (default: all cores)")->check(CLI::Range(int64_t{0}, limits::max_threads));
  cmd->add_option("--device", d.device, "where each --model runs: cpu, or cuda:N for a GPU")->capture_default_str();
  cmd->add_flag("!--no-repack", d.repack, "CPU: each --model reads its weights from the mapped file (shared by replicas) instead of copies in huge pages");
  cmd->add_option("--replicas", d.replicas, "replicas of each --model")->capture_default_str()->check(CLI::Range(int64_t{1}, limits::max_replicas));
  cmd->add_option("--kv-mb", d.kv_cache_mb, "KV cache budget per replica in MiB")->capture_default_str()->check(CLI::Range(int64_t{1}, limits::max_kv_cache_mb));
  cmd->add_option("--max-num-seqs", d.max_num_seqs, "sequences in a batch at most")->capture_default_str()->check(CLI::Range(int64_t{1}, limits::max_num_seqs));
  cmd->add_option("--max-num-batched-tokens", d.max_num_batched_tokens, "tokens per scheduler step at most")->capture_default_str()->check(CLI::Range(int64_t{1}, limits::max_num_batched_tokens));
  cmd->callback([args, cmd] {
    args->host_given = cmd->count("--host") > 0;
    args->port_given = cmd->count("--port") > 0;
    exit_code() = run_serve(*args);
  });
}

}  // namespace troupe::cli
