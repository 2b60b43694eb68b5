#pragma once
// The fixture of the tests that run real clusters: a temporary directory per test, the deploy configs
// moved onto free ports (with their TLS files made by `troupe certs`), `troupe node` processes by name.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "tests/cluster/node_process.hpp"

namespace troupe::test {

using namespace std::chrono_literals;

/// The text of a completion, or "(no completion: ...)" with what came instead.
inline std::string text_of(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("choices")) return "(no completion: " + j.dump() + ")";
  return j["choices"][0]["text"].get<std::string>();
}

class ClusterNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("troupe_cluster_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  /// Writes the deploy config `name` on free ports (text transformed by edit) and returns its path,
  /// with the TLS files its `tls` names made beside it by `troupe certs`.
  std::string config(const std::string& name, const std::function<std::string(std::string)>& edit = {}) {
    yaml_ = on_free_ports(read_text("deploy/cluster/" + name));
    if (edit) yaml_ = edit(yaml_);
    const auto p = dir_ / name;
    std::ofstream(p) << yaml_;
    make_certs(p);
    return p.string();
  }
  node_process& start(const std::string& cfg, const std::string& name) {
    nodes_[name] = std::make_unique<node_process>(cfg, name, dir_);
    return *nodes_[name];
  }
  std::string logs() const {
    std::string all;
    for (const auto& [name, n] : nodes_) all += "---- " + name + "\n" + n->log();
    return all;
  }
  /// Waits for the gateway's /ready.
  bool ready(int port, std::chrono::milliseconds timeout = 60s) {
    return eventually([&] { return get(port, "/ready").find("\"ready\"") != std::string::npos; }, timeout);
  }
  /// Waits for /ready and for both stories260K replicas of three-nodes-two-models.yaml to be routed to
  /// (/ready needs one replica per model only).
  bool both_workers_up(int port) {
    return ready(port) && eventually([&] {
             return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/0") == 1 &&
                    replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/1") == 1;
           }, 60s);
  }
  double replica_metric(int port, const std::string& what, const std::string& model, const std::string& replica) {
    return metric(get(port, "/metrics"), what + "{model=\"" + model + "\",replica=\"" + replica + "\"}");
  }

  /// Starts two-nodes-tp2.yaml (head, worker) and waits until its replica serves: the gateway's port,
  /// and the replica's greedy text for "Once upon a time" (24 tokens).
  void serve_two_nodes_tp2(int& port, std::string& text) {
    const std::string cfg = config("two-nodes-tp2.yaml");
    port = http_port_of(yaml_, "head");
    start(cfg, "head");
    start(cfg, "worker");
    ASSERT_TRUE(ready(port)) << logs();
    text = text_of(complete(port, "stories260K", "Once upon a time", 24));
    ASSERT_NE(text.find("there was a little girl"), std::string::npos) << text << logs();
  }

  std::filesystem::path dir_;
  std::string yaml_;
  std::map<std::string, std::unique_ptr<node_process>> nodes_;
};

}  // namespace troupe::test
