// Real clusters on loopback: `troupe node` processes started from the deploy/cluster configs (moved
// onto free ports), driven through the gateway's HTTP API.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/cluster/cluster_fixture.hpp"
#include "tests/tools/hostile_peer.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST_F(ClusterNodes, AHeadAndTwoWorkersServeTwoModelsAndRequestsLandOnBothWorkers) {
  const std::string cfg = config("three-nodes-two-models.yaml");
  const int port = http_port_of(yaml_, "head");
  for (const char* n : {"worker2", "head", "worker1"}) start(cfg, n);  // any order
  ASSERT_TRUE(both_workers_up(port)) << logs();

  // 16 different prompts, 4 at a time: the router spreads them over both workers' replicas.
  std::vector<std::string> texts(16);
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      for (int i = c; i < 16; i += 4) texts[static_cast<size_t>(i)] = text_of(complete(port, "stories260K", "Tale " + std::to_string(i * 7919) + ": once", 8));
    });
  for (auto& t : clients) t.join();
  for (const auto& t : texts) EXPECT_EQ(t.find("(no completion"), std::string::npos) << t;
  EXPECT_GT(replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/0"), 0) << get(port, "/metrics");
  EXPECT_GT(replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/1"), 0) << get(port, "/metrics");

  // The pipeline-parallel model (stage 0 on worker1, stage 1 on worker2, scheduler on head) is the
  // same network from its safetensors: its greedy text equals the one-shard replicas'.
  const std::string one_shard = text_of(complete(port, "stories260K", "Once upon a time", 24));
  EXPECT_NE(one_shard.find("there was a little girl"), std::string::npos) << one_shard;
  EXPECT_EQ(text_of(complete(port, "stories260K-pp", "Once upon a time", 24)), one_shard) << logs();

  for (auto& [name, n] : nodes_) EXPECT_EQ(n->kill(SIGTERM), 0) << name << "\n" << n->log();
}

TEST_F(ClusterNodes, TensorParallelAcrossTwoNodesGivesTheOneShardText) {
  const std::string one = config("one-node.yaml");
  const int one_port = http_port_of(yaml_, "head");
  start(one, "head");
  ASSERT_TRUE(ready(one_port)) << logs();
  std::vector<std::string> expected;
  for (const char* prompt : {"Once upon a time", "The little dog", "Lily and Ben went"})
    expected.push_back(text_of(complete(one_port, "stories260K", prompt, 32)));
  nodes_.clear();

  const std::string tp = config("two-nodes-tp2.yaml");
  const int port = http_port_of(yaml_, "head");
  start(tp, "worker");
  start(tp, "head");
  ASSERT_TRUE(ready(port)) << logs();
  size_t i = 0;
  for (const char* prompt : {"Once upon a time", "The little dog", "Lily and Ben went"})
    EXPECT_EQ(text_of(complete(port, "stories260K", prompt, 32)), expected[i++]) << prompt << "\n" << logs();
}

TEST_F(ClusterNodes, ATensorParallelReplicaAcrossTwoNodesComesBackWhenItsWorkerRestarts) {
  int port = 0;
  std::string before;
  ASSERT_NO_FATAL_FAILURE(serve_two_nodes_tp2(port, before));

  nodes_["worker"]->kill(SIGKILL);
  // Without its rank 1 the replica cannot run: a request gets an error, and does not hang.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(text_of(complete(port, "stories260K", "Once upon a time", 24, 20)).find("(no completion"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);

  // The restarted worker and head's surviving shard build a new tp group; the replica serves again.
  nodes_["worker"]->start();
  EXPECT_TRUE(eventually([&] { return text_of(complete(port, "stories260K", "Once upon a time", 24, 20)) == before; }, 60s))
      << logs();
}

// A stranger on the network sends garbage (16 bytes of 0xFF, random bytes, zeros, a connection that
// says nothing) to every TCP port each node listens on (node port, gateway, UCX) while a tp=2 replica
// across the two nodes serves, a request in flight. Every listening socket is on the configured host
// (UCX listened on every interface before, and its socket-address listener aborted on the 0xFF
// bytes); neither node dies, and the replica gives the same text after.
TEST_F(ClusterNodes, GarbageOnEveryListeningPortLeavesATensorParallelClusterServing) {
  int port = 0;
  std::string before;
  ASSERT_NO_FATAL_FAILURE(serve_two_nodes_tp2(port, before));

  std::string during;
  std::thread client([&] { during = text_of(complete(port, "stories260K", "Once upon a time", 24)); });
  for (const char* name : {"head", "worker"}) {
    const auto socks = listening_sockets(nodes_[name]->pid());
    EXPECT_GE(socks.size(), 2u) << name;  // its node port and its shard's UCX transport at least
    for (const auto& s : socks) {
      EXPECT_EQ(s.host, "127.0.0.1") << name << " listens on " << s.text();
      EXPECT_GT(send_garbage(s.port), 0) << name << " on " << s.text();
    }
  }
  client.join();
  EXPECT_EQ(during, before) << logs();
  EXPECT_EQ(text_of(complete(port, "stories260K", "Once upon a time", 24)), before) << logs();
  for (auto& [name, n] : nodes_) EXPECT_TRUE(n->running()) << name << " died\n" << logs();
}

TEST_F(ClusterNodes, TensorTimesPipelineParallelTwoByTwoGivesTheOneShardText) {
  const std::string one = config("one-node.yaml");
  const int one_port = http_port_of(yaml_, "head");
  start(one, "head");
  ASSERT_TRUE(ready(one_port)) << logs();
  const std::string expected = text_of(complete(one_port, "stories260K", "Once upon a time", 32));
  nodes_.clear();

  // Four shards over two workers: stage 0 ranks 0 and 1, stage 1 ranks 0 and 1.
  const std::string text = on_free_ports(
      "cluster: tp2xpp2\n"
      "nodes:\n"
      "  - {name: head, host: 127.0.0.1, port: 7460, http_port: 8060}\n"
      "  - {name: w1, host: 127.0.0.1, port: 7461, data_port: 7560, threads: 1}\n"
      "  - {name: w2, host: 127.0.0.1, port: 7462, data_port: 7570, threads: 1}\n"
      "models:\n"
      "  - name: stories260K\n"
      "    path: stories260K/stories260K.gguf\n"
      "    tp: 2\n"
      "    pp: 2\n"
      "    replicas:\n"
      "      - {scheduler: head, shards: [w1, w2, w2, w1]}\n");
  const fs::path cfg = dir_ / "tp2xpp2.yaml";
  std::ofstream(cfg) << text;
  const int port = http_port_of(text, "head");
  for (const char* n : {"w1", "w2", "head"}) start(cfg.string(), n);
  ASSERT_TRUE(ready(port)) << logs();
  EXPECT_EQ(text_of(complete(port, "stories260K", "Once upon a time", 32)), expected) << logs();
}

TEST_F(ClusterNodes, TwoGatewayNodesEachRouteToTheSameReplicas) {
  // Redundant gateways: each runs its own router over the same schedulers; either one serves.
  const std::string text = on_free_ports(
      "cluster: two-gateways\n"
      "nodes:\n"
      "  - {name: g1, host: 127.0.0.1, port: 7470, http_port: 8070}\n"
      "  - {name: g2, host: 127.0.0.1, port: 7471, http_port: 8071}\n"
      "  - {name: w1, host: 127.0.0.1, port: 7472, threads: 1}\n"
      "models:\n"
      "  - name: stories260K\n"
      "    path: stories260K/stories260K.gguf\n"
      "    replicas: [{node: w1}]\n");
  const fs::path cfg = dir_ / "two-gateways.yaml";
  std::ofstream(cfg) << text;
  for (const char* n : {"g1", "g2", "w1"}) start(cfg.string(), n);
  const int p1 = http_port_of(text, "g1"), p2 = http_port_of(text, "g2");
  ASSERT_TRUE(ready(p1) && ready(p2)) << logs();
  const std::string a = text_of(complete(p1, "stories260K", "Once upon a time", 16));
  EXPECT_NE(a.find("there was a little girl"), std::string::npos) << a;
  EXPECT_EQ(text_of(complete(p2, "stories260K", "Once upon a time", 16)), a);
  // One gateway going away leaves the other serving.
  EXPECT_EQ(nodes_["g1"]->kill(SIGTERM), 0);
  EXPECT_EQ(text_of(complete(p2, "stories260K", "Once upon a time", 16)), a);
}

/// One streamed request: completed (finish_reason and [DONE]), ended with an error event or status,
/// or hung (the client gave up).
enum class outcome { completed, error, hung };

outcome stream_once(int port, const std::string& prompt) {
  nlohmann::json body{{"model", "stories260K"}, {"prompt", prompt}, {"max_tokens", 48}, {"temperature", 0},
                      {"stream", true}, {"ignore_eos", true}};
  const auto r = run("curl -s -N --max-time 20 -H 'Content-Type: application/json' --data-binary " + sh_quote(body.dump()) +
                     " http://127.0.0.1:" + std::to_string(port) + "/v1/completions");
  if (r.exit_code == 28) return outcome::hung;  // curl: operation timed out
  const bool done = r.out.find("data: [DONE]") != std::string::npos;
  if (r.out.find("\"error\"") != std::string::npos) return outcome::error;
  if (done && r.out.find("\"finish_reason\":\"length\"") != std::string::npos) return outcome::completed;
  return r.exit_code == 0 ? outcome::error : outcome::hung;
}

TEST_F(ClusterNodes, AKilledWorkerEndsEveryRequestCleanlyAndRejoinsWhenRestarted) {
  const std::string cfg = config("three-nodes-two-models.yaml");
  const int port = http_port_of(yaml_, "head");
  for (const char* n : {"head", "worker1", "worker2"}) start(cfg, n);
  ASSERT_TRUE(both_workers_up(port)) << logs();

  // Steady load: 4 clients streaming one request after another.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<outcome, int> counts;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        const outcome o = stream_once(port, "Story " + std::to_string(c * 1000 + i) + " begins");
        std::lock_guard lock(mu);
        ++counts[o];
      }
    });
  std::this_thread::sleep_for(1500ms);
  const auto killed_at = std::chrono::steady_clock::now();
  nodes_["worker1"]->kill(SIGKILL);
  // Within 2 s the router stops using the dead worker's replica.
  EXPECT_TRUE(eventually([&] { return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/0") == 0; }, 2s))
      << get(port, "/metrics");
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 2500ms);
  std::this_thread::sleep_for(1500ms);
  stop = true;
  for (auto& t : clients) t.join();
  std::printf("under load: %d completed, %d ended with an error, %d hung\n", counts[outcome::completed],
              counts[outcome::error], counts[outcome::hung]);
  EXPECT_GT(counts[outcome::completed], 4) << "completed " << counts[outcome::completed];
  EXPECT_EQ(counts[outcome::hung], 0) << "requests that neither completed nor ended with an error";
  // New requests all go to the surviving replica and complete.
  const double before = replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/1");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(stream_once(port, "After the crash " + std::to_string(i)), outcome::completed);
  EXPECT_GE(replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/1"), before + 6);

  // The worker comes back and takes traffic again.
  nodes_["worker1"]->start();
  ASSERT_TRUE(eventually([&] { return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/0") == 1; }, 30s))
      << logs();
  const double rejoined = replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/0");
  std::vector<std::thread> again;
  for (int c = 0; c < 4; ++c)
    again.emplace_back([&, c] {
      for (int i = c; i < 16; i += 4) EXPECT_EQ(stream_once(port, "Back again " + std::to_string(i * 31)), outcome::completed);
    });
  for (auto& t : again) t.join();
  EXPECT_GT(replica_metric(port, "troupe_replica_requests_total", "stories260K", "stories260K/0"), rejoined) << logs();
}

TEST_F(ClusterNodes, AStoppedWorkerMissesItsHeartbeatsAndIsRoutedAroundUntilItAnswers) {
  const std::string cfg = config("three-nodes-two-models.yaml");
  const int port = http_port_of(yaml_, "head");
  for (const char* n : {"head", "worker1", "worker2"}) start(cfg, n);
  ASSERT_TRUE(both_workers_up(port)) << logs();
  nodes_["worker2"]->kill(SIGSTOP);  // alive to TCP, silent to heartbeats
  EXPECT_TRUE(eventually([&] { return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/1") == 0; }, 2s))
      << get(port, "/metrics");
  for (int i = 0; i < 4; ++i) EXPECT_NE(text_of(complete(port, "stories260K", "While stopped " + std::to_string(i), 8)).find("(no"), 0u);
  nodes_["worker2"]->kill(SIGCONT);
  EXPECT_TRUE(eventually([&] { return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/1") == 1; }, 3s))
      << logs();
}

TEST_F(ClusterNodes, ANodeWithAnotherConfigIsRefusedNamingTheDifference) {
  const std::string cfg = config("three-nodes-two-models.yaml");
  const int port = http_port_of(yaml_, "head");
  const fs::path other = dir_ / "other.yaml";
  std::ofstream(other) << yaml_ << "# edited on one machine only\n";
  start(cfg, "head");
  start(other.string(), "worker1");
  start(cfg, "worker2");
  EXPECT_TRUE(eventually([&] { return nodes_["head"]->log().find("runs another cluster config") != std::string::npos; }, 20s))
      << logs();
  // worker2 serves; worker1's replica never joins, so the model on worker1 alone stays unrouted.
  EXPECT_TRUE(eventually([&] { return replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/1") == 1; }, 20s));
  EXPECT_NE(replica_metric(port, "troupe_replica_up", "stories260K", "stories260K/0"), 1);
  EXPECT_EQ(get(port, "/ready").find("\"ready\""), std::string::npos) << "a model has no replica: not ready";
}

TEST_F(ClusterNodes, ABadConfigOrNodeNameIsRefusedAtStartNamingIt) {
  const auto bad = run(troupe_bin() + " node --config deploy/cluster/one-node.yaml --name nobody");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("no node named 'nobody' (nodes: head)"), std::string::npos) << bad.err;
  const fs::path typo = dir_ / "typo.yaml";
  std::ofstream(typo) << "nodes:\n  - {name: a, port: 7000, http_port: 8000, thread: 2}\nmodels: []\n";
  const auto t = run(troupe_bin() + " node --config " + typo.string() + " --name a");
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.err.find("nodes[0].thread: unknown key"), std::string::npos) << t.err;
  // A truncated model file: the gateway node reads every model's header and tokenizer at start.
  const fs::path cut = dir_ / "cut.gguf";
  {
    const std::string whole = read_text(shared_dir + "/models/stories260K/stories260K.gguf");
    std::ofstream(cut, std::ios::binary) << whole.substr(0, 4096);
  }
  const fs::path trunc = dir_ / "trunc.yaml";
  std::ofstream(trunc) << on_free_ports("nodes:\n  - {name: a, port: 7000, http_port: 8000}\nmodels:\n  - {name: m, path: " +
                                        cut.string() + ", replicas: [{node: a}]}\n");
  const auto tr = run(troupe_bin() + " node --config " + trunc.string() + " --name a");
  EXPECT_EQ(tr.exit_code, 1);
  EXPECT_NE(tr.err.find("model 'm'"), std::string::npos) << tr.err;
  EXPECT_NE(tr.err.find("cut.gguf"), std::string::npos) << tr.err;
  const std::string three = config("three-nodes-two-models.yaml");
  const auto check = run("TROUPE_MODEL_DIR=" + shared_dir + "/models " + troupe_bin() + " node --config " + three + " --name worker2 --check");
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("shard stories260K-pp/0/shard1 (tp rank 0/1, pp stage 1/2)"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("(mutual TLS, cert " + (dir_ / "certs/worker2.pem").string() + ")"), std::string::npos) << check.out;
  // Its key gone, the node refuses to start (and --check says so), naming the file.
  fs::remove(dir_ / "certs/worker2.key");
  for (const std::string extra : {" --check", ""}) {
    const auto no_key = run("TROUPE_MODEL_DIR=" + shared_dir + "/models " + troupe_bin() + " node --config " + three +
                            " --name worker2" + extra);
    EXPECT_EQ(no_key.exit_code, 1) << extra;
    EXPECT_NE(no_key.err.find("tls.key: " + (dir_ / "certs/worker2.key").string() + " does not exist"), std::string::npos) << no_key.err;
  }
}

}  // namespace
}  // namespace troupe::test
