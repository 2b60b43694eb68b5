// troupe certs: a cluster CA and a certificate and key per node for the nodes' mutual TLS
// (cluster/certs.hpp says what it writes).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tools/troupe/commands.hpp"

#if defined(TROUPE_HAVE_CLUSTER)
#include "cluster/certs.hpp"
#include "cluster/cluster_config.hpp"
#endif

namespace troupe::cli {
namespace {

struct certs_args {
  std::string out;
  std::string nodes;   ///< "head,w1,w2"
  std::string config;  ///< a cluster config: its name, nodes and hosts, and its CA's directory as the default --out
  int days = 730;
};

#if defined(TROUPE_HAVE_CLUSTER)
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_certs(const certs_args& a) {
  cluster::certs_request req;
  req.days = a.days;
  req.out = a.out;
  const std::vector<std::string> named = split_commas(a.nodes);
  if (!a.config.empty()) {
    auto cfg = cluster::load_cluster_config(a.config);
    if (!cfg) {
      std::fprintf(stderr, "troupe certs: %s\n", cfg.error().what().c_str());
      return 1;
    }
    req.cluster = cfg->name;
    if (req.out.empty() && cfg->tls.enabled) req.out = cfg->tls_files_of("").ca.parent_path();
    for (const auto& n : cfg->nodes)
      if (named.empty() || std::find(named.begin(), named.end(), n.name) != named.end()) req.nodes.push_back({n.name, n.host});
    for (const auto& n : named)
      if (!cfg->find_node(n)) {
        std::fprintf(stderr, "troupe certs: %s: no node named '%s' (nodes: %s)\n", a.config.c_str(), n.c_str(),
                     cfg->node_names().c_str());
        return 1;
      }
  } else {
    for (const auto& n : named) req.nodes.push_back({n, ""});
  }
  if (req.out.empty()) {
    std::fprintf(stderr, "troupe certs: say where the files go with --out DIR (or give a --config whose tls has a dir)\n");
    return 1;
  }
  auto report = cluster::make_cluster_certs(req);
  if (!report) {
    std::fprintf(stderr, "troupe certs: %s\n", report.error().what().c_str());
    return 1;
  }
  const std::string dir = req.out.string();
  std::printf("%s: %s\n", (dir + "/ca.pem").c_str(), report->made_ca ? "new cluster CA (its key: ca.key, keep it off the nodes)" : "existing CA kept");
  for (const auto& n : report->made) std::printf("%s/%s.pem, %s.key: new, signed by the CA\n", dir.c_str(), n.c_str(), n.c_str());
  for (const auto& n : report->kept) std::printf("%s/%s.pem, %s.key: kept (valid under the CA)\n", dir.c_str(), n.c_str(), n.c_str());
  std::printf("copy ca.pem to every node, and each NODE.pem and NODE.key to that node only\n");
  return 0;
}
#else
int run_certs(const certs_args&) {
  std::fprintf(stderr, "troupe certs: this build has no cluster runtime (CAF, its OpenSSL module or Protobuf was not found at build time)\n");
  return 1;
}
#endif

}  // namespace

void add_certs(CLI::App& app) {
  auto args = std::make_shared<certs_args>();
  CLI::App* cmd = app.add_subcommand("certs", "make a cluster CA and a TLS certificate and key per node (see deploy/cluster/)");
  cmd->add_option("--out,-o", args->out, "directory for ca.pem, ca.key, NODE.pem, NODE.key (default: the config's tls.dir)");
  cmd->add_option("--nodes", args->nodes, "node names, comma-separated (with --config: only these of its nodes)");
  cmd->add_option("--config,-c", args->config, "cluster config: take node names and hosts (subjectAltName) from it");
  cmd->add_option("--days", args->days, "validity of new node certificates in days")->default_val(730);
  cmd->callback([args] { exit_code() = run_certs(*args); });
}

}  // namespace troupe::cli
