#include "cluster/cluster_config.hpp"

#include <arpa/inet.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "runtime/config/yaml_read.hpp"
#include "runtime/model/model_runner.hpp"

namespace troupe::cluster {
namespace {

namespace fs = std::filesystem;
using namespace troupe::config;

expected<std::vector<std::string>> read_names(const YAML::Node& n, const std::string& origin, const std::string& key) {
  std::vector<std::string> out;
  if (!n.IsSequence()) return key_error(origin, key, "must be a list of node names");
  for (const auto& e : n) {
    try {
      out.push_back(e.as<std::string>());
    } catch (const YAML::Exception&) {
      return key_error(origin, key, "must be a list of node names");
    }
  }
  return out;
}

expected<node_config> read_node(const YAML::Node& n, const std::string& origin, const std::string& where) {
  if (!n.IsMap()) return key_error(origin, where.substr(0, where.size() - 1), "must be a mapping");
  TROUPE_TRY(check_keys(n, {"name", "host", "port", "http_port", "http_host", "data_port", "threads", "devices"}, origin, where));
  node_config nc;
  TROUPE_TRY(read(n, "name", nc.name, origin, where));
  TROUPE_TRY(read(n, "host", nc.host, origin, where));
  TROUPE_TRY(read_int(n, "port", nc.port, {1, 65535}, origin, where));
  TROUPE_TRY(read_int(n, "http_port", nc.http_port, {0, 65535}, origin, where));
  TROUPE_TRY(read(n, "http_host", nc.http_host, origin, where));
  TROUPE_TRY(read_int(n, "data_port", nc.data_port, {0, 65535}, origin, where));
  TROUPE_TRY(read_int(n, "threads", nc.threads, {0, limits::max_threads}, origin, where));
  if (const YAML::Node d = n["devices"]) {
    auto devices = read_names(d, origin, where + "devices");
    if (!devices) return key_error(origin, where + "devices", "must be a list of devices (cpu, cuda:N)");
    nc.devices = std::move(*devices);
    for (const auto& dev : nc.devices)
      if (auto p = parse_device(dev); !p) return key_error(origin, where + "devices", p.error().message());
  }
  if (nc.name.empty()) return key_error(origin, where + "name", "is required");
  if (nc.host.empty()) return key_error(origin, where + "host", "must not be empty");
  if (nc.host == "0.0.0.0" || nc.host == "::" || nc.host == "*")
    return key_error(origin, where + "host",
                     "must be the address other nodes reach this node at, not a wildcard (" + nc.host +
                         " would open the control port on every interface)");
  if (!n["port"]) return key_error(origin, where + "port", "is required (the node's control-plane port)");
  if (nc.data_port == 0) nc.data_port = nc.port + 100;  // past 65535 only with shards: refused below
  if (nc.http_host.empty()) nc.http_host = nc.host;
  return nc;
}

/// The `tls` section, paths resolved against config_dir.
expected<tls_config> read_tls(const YAML::Node& t, const std::string& origin, const fs::path& config_dir) {
  if (!t.IsMap()) return key_error(origin, "tls", "must be a mapping: {dir: DIR} or {ca: FILE, cert: FILE, key: FILE}");
  TROUPE_TRY(check_keys(t, {"dir", "ca", "cert", "key", "handshake_timeout_ms"}, origin, "tls."));
  tls_config tc;
  tc.enabled = true;
  std::string dir;
  TROUPE_TRY(read(t, "dir", dir, origin, "tls."));
  TROUPE_TRY(read(t, "ca", tc.ca, origin, "tls."));
  TROUPE_TRY(read(t, "cert", tc.cert, origin, "tls."));
  TROUPE_TRY(read(t, "key", tc.key, origin, "tls."));
  TROUPE_TRY(read_int(t, "handshake_timeout_ms", tc.handshake_timeout_ms, {1, 3600000}, origin, "tls."));
  if (!dir.empty()) {
    if (tc.ca.empty()) tc.ca = (fs::path(dir) / "ca.pem").string();
    if (tc.cert.empty()) tc.cert = (fs::path(dir) / "{node}.pem").string();
    if (tc.key.empty()) tc.key = (fs::path(dir) / "{node}.key").string();
  }
  for (auto [key, value] : {std::pair{"ca", &tc.ca}, {"cert", &tc.cert}, {"key", &tc.key}}) {
    if (value->empty()) return key_error(origin, std::string("tls.") + key, "is required (or give tls.dir)");
    if (fs::path(*value).is_relative()) *value = (config_dir / *value).lexically_normal().string();
  }
  return tc;
}

std::string hex_digest(const std::string& text) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(text.data(), text.size())));
  return buf;
}

}  // namespace

bool is_file_safe_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name != "ca" &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

tls_files cluster_config::tls_files_of(const std::string& node) const {
  auto with_node = [&](std::string pattern) {
    for (size_t at; (at = pattern.find("{node}")) != std::string::npos;) pattern.replace(at, 6, node);
    return fs::path(pattern);
  };
  return tls_files{with_node(tls.ca), with_node(tls.cert), with_node(tls.key)};
}

const node_config* cluster_config::find_node(const std::string& n) const {
  for (const auto& node : nodes)
    if (node.name == n) return &node;
  return nullptr;
}

std::string cluster_config::node_names() const {
  std::string out;
  for (const auto& n : nodes) out += (out.empty() ? "" : ", ") + n.name;
  return out;
}

std::string replica_key(const std::string& model, int replica) { return model + "/" + std::to_string(replica); }

std::string shard_slot::key() const { return replica_key(model->model.name, replica) + "/shard" + std::to_string(index); }

std::vector<shard_slot> shards_on(const cluster_config& cfg, const std::string& node) {
  std::vector<shard_slot> out;
  for (const auto& m : cfg.models)
    for (size_t r = 0; r < m.replicas.size(); ++r)
      for (size_t k = 0; k < m.replicas[r].shards.size(); ++k)
        if (m.replicas[r].shards[k] == node) out.push_back(shard_slot{&m, static_cast<int>(r), static_cast<int>(k)});
  return out;
}

data_ports shard_data_ports(const cluster_config& cfg, const shard_slot& slot) {
  const std::string node = slot.node();
  const node_config* nc = cfg.find_node(node);
  const auto here = shards_on(cfg, node);
  int k = 0;
  for (; k < static_cast<int>(here.size()); ++k)
    if (here[static_cast<size_t>(k)].model == slot.model && here[static_cast<size_t>(k)].replica == slot.replica &&
        here[static_cast<size_t>(k)].index == slot.index)
      break;
  return data_ports{nc->data_port + 2 * k, nc->data_port + 2 * k + 1};
}

expected<cluster_config> parse_cluster_config(const std::string& yaml_text, const std::string& origin,
                                              const fs::path& model_dir, const fs::path& config_dir) {
  auto parsed = parse_yaml(yaml_text, origin);
  TROUPE_TRY(parsed);
  const YAML::Node root = *parsed;
  if (!root || root.IsNull()) return key_error(origin, "nodes", "the file is empty; list the nodes and the models");
  if (!root.IsMap()) return key_error(origin, "(top level)", "must be a mapping with `nodes` and `models`");
  TROUPE_TRY(check_keys(root, {"cluster", "nodes", "models", "routing", "heartbeat", "tls"}, origin, ""));
  cluster_config cfg;
  cfg.digest = hex_digest(yaml_text);
  cfg.origin = origin;
  TROUPE_TRY(read(root, "cluster", cfg.name, origin, ""));
  if (const YAML::Node r = root["routing"]) {
    auto routing = read_routing(r, origin);
    TROUPE_TRY(routing);
    cfg.routing = *routing;
  }
  if (const YAML::Node h = root["heartbeat"]) {
    if (!h.IsMap()) return key_error(origin, "heartbeat", "must be a mapping");
    TROUPE_TRY(check_keys(h, {"interval_ms", "timeout_ms"}, origin, "heartbeat."));
    TROUPE_TRY(read_int(h, "interval_ms", cfg.heartbeat.interval_ms, {1, 3600000}, origin, "heartbeat."));
    TROUPE_TRY(read_int(h, "timeout_ms", cfg.heartbeat.timeout_ms, {1, 3600000}, origin, "heartbeat."));
    if (cfg.heartbeat.timeout_ms <= cfg.heartbeat.interval_ms)
      return key_error(origin, "heartbeat.timeout_ms", "must be larger than interval_ms (" +
                                                           std::to_string(cfg.heartbeat.interval_ms) + ")");
  }

  const YAML::Node nodes = root["nodes"];
  if (!nodes || !nodes.IsSequence() || nodes.size() == 0) return key_error(origin, "nodes", "must be a non-empty list of nodes");
  std::map<std::pair<std::string, int>, std::string> ports;  // (host, port) -> "nodes[i].key", for clashes
  auto claim = [&](const std::string& host, int port, const std::string& key) -> status {
    if (port == 0) return {};
    auto [it, fresh] = ports.emplace(std::make_pair(host, port), key);
    if (!fresh) return key_error(origin, key, "port " + std::to_string(port) + " on " + host + " is also " + it->second);
    return {};
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string where = "nodes[" + std::to_string(i) + "].";
    auto nc = read_node(nodes[i], origin, where);
    TROUPE_TRY(nc);
    if (cfg.find_node(nc->name)) return key_error(origin, where + "name", "'" + nc->name + "' is listed twice");
    TROUPE_TRY(claim(nc->host, nc->port, where + "port"));
    TROUPE_TRY(claim(nc->http_host, nc->http_port, where + "http_port"));
    cfg.nodes.push_back(std::move(*nc));
  }
  if (std::none_of(cfg.nodes.begin(), cfg.nodes.end(), [](const node_config& n) { return n.http_port > 0; }))
    return key_error(origin, "nodes", "no node has an http_port: give the node that runs the gateway one");
  if (const YAML::Node t = root["tls"]) {
    auto tls = read_tls(t, origin, config_dir);
    TROUPE_TRY(tls);
    cfg.tls = std::move(*tls);
    if ((cfg.tls.cert + cfg.tls.key).find("{node}") != std::string::npos)
      for (size_t i = 0; i < cfg.nodes.size(); ++i)
        if (!is_file_safe_name(cfg.nodes[i].name))
          return key_error(origin, "nodes[" + std::to_string(i) + "].name",
                           "must be letters, digits, '.', '_' or '-', and not 'ca': tls names files after the nodes");
  } else {
    // Without TLS anyone who reaches a control port is a peer; only loopback keeps that to this machine.
    for (size_t i = 0; i < cfg.nodes.size(); ++i)
      if (!is_loopback_host(cfg.nodes[i].host))
        return key_error(origin, "tls",
                         "is required: node '" + cfg.nodes[i].name + "' listens on " + cfg.nodes[i].host +
                             ", not a loopback address, and nodes must authenticate each other there: add "
                             "`tls: {dir: certs}` and make the files with `troupe certs --config FILE`");
  }

  const YAML::Node models = root["models"];
  if (!models || !models.IsSequence() || models.size() == 0)
    return key_error(origin, "models", "must be a non-empty list of models");
  std::set<std::string> known = model_keys();
  known.erase("replicas");
  known.insert({"tp", "pp", "replicas"});
  for (size_t i = 0; i < models.size(); ++i) {
    const YAML::Node m = models[i];
    const std::string where = "models[" + std::to_string(i) + "].";
    if (!m.IsMap()) return key_error(origin, "models[" + std::to_string(i) + "]", "must be a mapping");
    TROUPE_TRY(check_keys(m, known, origin, where));
    // `replicas` is a placement list here, not serve's count.
    auto mc = read_model(m, origin, where, model_dir, false);
    TROUPE_TRY(mc);
    cluster_model cm;
    cm.model = std::move(*mc);
    for (const auto& other : cfg.models)
      if (other.model.name == cm.model.name) return key_error(origin, where + "name", "'" + cm.model.name + "' is listed twice");
    // The model file's heads and layers bound them further (check_model_files).
    TROUPE_TRY(read_int(m, "tp", cm.tp, {1, max_parallel}, origin, where));
    TROUPE_TRY(read_int(m, "pp", cm.pp, {1, max_parallel}, origin, where));
    // As create_model_runner refuses it: the shards would never load.
    if (cm.model.device != "cpu" && cm.tp * cm.pp > 1)
      return key_error(origin, where + "device", cm.model.device + ": tensor and pipeline parallelism (tp " + std::to_string(cm.tp) +
                                                     " x pp " + std::to_string(cm.pp) + ") run on the CPU only for now");
    const YAML::Node reps = m["replicas"];
    if (!reps || !reps.IsSequence() || reps.size() == 0)
      return key_error(origin, where + "replicas", "must be a non-empty list of placements, e.g. - {node: NAME}");
    const size_t n_shards = static_cast<size_t>(cm.tp * cm.pp);
    for (size_t r = 0; r < reps.size(); ++r) {
      const std::string rw = where + "replicas[" + std::to_string(r) + "].";
      const YAML::Node rn = reps[r];
      if (!rn.IsMap()) return key_error(origin, rw.substr(0, rw.size() - 1), "must be a mapping: {node: NAME} or {scheduler: NAME, shards: [...]}");
      TROUPE_TRY(check_keys(rn, {"node", "scheduler", "shards"}, origin, rw));
      std::string node;
      replica_placement p;
      TROUPE_TRY(read(rn, "node", node, origin, rw));
      TROUPE_TRY(read(rn, "scheduler", p.scheduler, origin, rw));
      if (const YAML::Node s = rn["shards"]) {
        auto names = read_names(s, origin, rw + "shards");
        TROUPE_TRY(names);
        p.shards = std::move(*names);
      }
      if (p.scheduler.empty()) p.scheduler = node;
      if (p.shards.empty() && !node.empty()) p.shards.assign(n_shards, node);
      if (p.scheduler.empty()) return key_error(origin, rw + "scheduler", "is required (or give `node`)");
      if (p.shards.size() != n_shards)
        return key_error(origin, rw + "shards", "must name " + std::to_string(n_shards) + " node(s) (tp " +
                                                    std::to_string(cm.tp) + " x pp " + std::to_string(cm.pp) + "), got " +
                                                    std::to_string(p.shards.size()));
      if (!cfg.find_node(p.scheduler))
        return key_error(origin, rw + "scheduler", "unknown node '" + p.scheduler + "' (nodes: " + cfg.node_names() + ")");
      for (const auto& n : p.shards) {
        const node_config* nc = cfg.find_node(n);
        if (!nc) return key_error(origin, rw + "shards", "unknown node '" + n + "' (nodes: " + cfg.node_names() + ")");
        if (std::find(nc->devices.begin(), nc->devices.end(), cm.model.device) == nc->devices.end())
          return key_error(origin, rw + "shards", "node '" + n + "' has no device " + cm.model.device);
      }
      cm.replicas.push_back(std::move(p));
    }
    cm.model.replicas = static_cast<int>(cm.replicas.size());
    cfg.models.push_back(std::move(cm));
  }
  // The data ports of every shard must not clash with any other port of its host.
  for (const auto& n : cfg.nodes) {
    const auto here = shards_on(cfg, n.name);
    for (const auto& slot : here) {
      const data_ports dp = shard_data_ports(cfg, slot);
      if (dp.pp > 65535) return key_error(origin, "nodes[" + n.name + "].data_port", "leaves no room for the ports of its shards");
      if (slot.model->tp > 1) TROUPE_TRY(claim(n.host, dp.tp, "data port of shard " + slot.key()));
      if (slot.model->pp > 1) TROUPE_TRY(claim(n.host, dp.pp, "data port of shard " + slot.key()));
    }
  }
  return cfg;
}

expected<cluster_config> load_cluster_config(const fs::path& file) {
  auto text = read_file(file, "cluster config");
  TROUPE_TRY(text);
  fs::path model_dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (const char* env = std::getenv("TROUPE_MODEL_DIR"); env && *env) model_dir = env;
  const fs::path config_dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  return parse_cluster_config(*text, file.string(), model_dir, config_dir);
}

}  // namespace troupe::cluster
