// troupe node: one node of a cluster, from the cluster config every node reads (deploy/cluster/).
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "tools/troupe/commands.hpp"

#if defined(TROUPE_HAVE_CLUSTER)
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "cluster/cluster_config.hpp"
#include "cluster/node.hpp"
#include "cluster/tls.hpp"
#endif

namespace troupe::cli {
namespace {

struct node_args {
  std::string config;
  std::string name;
  bool check = false;  ///< validate the config and print the node's part, then exit
};

#if defined(TROUPE_HAVE_CLUSTER)
/// What the config places on the node, one line each (for --check and the start-up log).
std::string describe(const cluster::cluster_config& cfg, const std::string& name) {
  std::string out;
  const cluster::node_config& me = *cfg.find_node(name);
  out += "node " + name + ": control " + me.host + ":" + std::to_string(me.port) +
         (cfg.tls.enabled ? " (mutual TLS, cert " + cfg.tls_files_of(name).cert.string() + ")" : " (no TLS: loopback only)") + "\n";
  if (me.http_port > 0) out += "  gateway on http://" + me.http_host + ":" + std::to_string(me.http_port) + "\n";
  for (const auto& m : cfg.models)
    for (size_t r = 0; r < m.replicas.size(); ++r) {
      if (m.replicas[r].scheduler == name) out += "  scheduler " + cluster::replica_key(m.model.name, static_cast<int>(r)) + "\n";
    }
  for (const auto& slot : cluster::shards_on(cfg, name)) {
    out += "  shard " + slot.key() + " (tp rank " + std::to_string(slot.rank()) + "/" + std::to_string(slot.model->tp) +
           ", pp stage " + std::to_string(slot.stage()) + "/" + std::to_string(slot.model->pp) + ")";
    const auto dp = cluster::shard_data_ports(cfg, slot);
    if (slot.model->tp > 1) out += " tp port " + std::to_string(dp.tp);
    if (slot.model->pp > 1) out += " pp port " + std::to_string(dp.pp);
    out += "\n";
  }
  return out;
}

int run_node(const node_args& a) {
  auto cfg = cluster::load_cluster_config(a.config);
  if (!cfg) {
    std::fprintf(stderr, "troupe node: %s\n", cfg.error().what().c_str());
    return 1;
  }
  if (!cfg->find_node(a.name)) {
    std::fprintf(stderr, "troupe node: %s: no node named '%s' (nodes: %s)\n", a.config.c_str(), a.name.c_str(),
                 cfg->node_names().c_str());
    return 1;
  }
  // The model files' heads and layers against tp and pp, and the KV budgets against this machine's
  // memory: a split that cannot load fails here, not in a shard while the gateway waits for it.
  if (auto st = cluster::check_model_files(*cfg, a.name, physical_memory_bytes()); !st) {
    std::fprintf(stderr, "troupe node: %s\n", st.error().what().c_str());
    return 1;
  }
  if (a.check) {
    if (cfg->tls.enabled)
      if (auto ok = cluster::check_tls_files(cfg->tls_files_of(a.name)); !ok) {
        std::fprintf(stderr, "troupe node: %s: %s\n", a.config.c_str(), ok.error().what().c_str());
        return 1;
      }
    std::fputs(describe(*cfg, a.name).c_str(), stdout);
    return 0;
  }
  stop_signals signals;  // before any thread starts

  caf::actor_system_config sys_cfg;
  if (auto ok = cluster::configure_node_system(sys_cfg, *cfg, a.name); !ok) {
    std::fprintf(stderr, "troupe node: %s: %s\n", a.config.c_str(), ok.error().what().c_str());
    return 1;
  }
  caf::actor_system sys{sys_cfg};
  auto node = cluster::node_runtime::start(sys, *cfg, a.name);
  if (!node) {
    std::fprintf(stderr, "troupe node: %s\n", node.error().what().c_str());
    return 1;
  }
  std::fprintf(stderr, "troupe node: %s", describe(*cfg, a.name).c_str());
  if ((*node)->http_port() > 0)
    std::fprintf(stderr, "troupe node: %s: listening on http://%s:%u\n", a.name.c_str(),
                 cfg->find_node(a.name)->http_host.c_str(), (*node)->http_port());
  std::fflush(stderr);
  // Until a signal, or until a part of the node fails for good: then the node stops and exits 1.
  const char* sig = nullptr;
  std::optional<error> failure;
  while (!sig && !(failure = (*node)->failure())) sig = signals.wait_for(200);
  if (failure)
    std::fprintf(stderr, "troupe node: %s: %s; stopping\n", a.name.c_str(), failure->what().c_str());
  else
    std::fprintf(stderr, "troupe node: %s received, stopping\n", sig);
  const int code = failure ? 1 : 0;
  if (!(*node)->stop(std::chrono::seconds(failure ? 0 : 30))) {
    // A shard still waits for peers that left: nothing is in flight, so leave without the actor
    // system's shutdown, which would wait for that thread.
    std::fprintf(stderr, "troupe node: a shard was still waiting for its data-plane peers; exiting without waiting\n");
    std::fflush(stderr);
    std::_Exit(code);
  }
  node->reset();
  return code;
}
#else
int run_node(const node_args&) {
  std::fprintf(stderr, "troupe node: this build has no cluster runtime (CAF or Protobuf was not found at build time)\n");
  return 1;
}
#endif

}  // namespace

void add_node(CLI::App& app) {
  auto args = std::make_shared<node_args>();
  CLI::App* cmd = app.add_subcommand("node", "run one node of a cluster (see deploy/cluster/)");
  cmd->add_option("--config,-c", args->config, "cluster config (YAML), the same file on every node")->required();
  cmd->add_option("--name,-n", args->name, "this node's name in the config")->required();
  cmd->add_flag("--check", args->check, "check the config and print what it places on this node, then exit");
  cmd->callback([args] { exit_code() = run_node(*args); });
}

}  // namespace troupe::cli
