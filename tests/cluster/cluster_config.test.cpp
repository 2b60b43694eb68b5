// The cluster config: the deploy examples parse and place what their comments say; mistakes are
// refused naming the key and the problem.
#include "cluster/cluster_config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/model/weights.hpp"

namespace troupe::cluster {
namespace {

const std::string base = R"(
cluster: t
nodes:
  - {name: head, host: 127.0.0.1, port: 7000, http_port: 8000}
  - {name: w1, port: 7001, data_port: 7100}
  - {name: w2, port: 7002, data_port: 7200}
models:
  - name: m
    path: stories260K/stories260K.gguf
)";

expected<cluster_config> parse(const std::string& extra) { return parse_cluster_config(base + extra, "c.yaml", "/models"); }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_of(const std::string& text) {
  auto c = parse_cluster_config(text, "c.yaml", "/models");
  return c ? std::string("(accepted)") : c.error().message();
}

TEST(ClusterConfig, TheDeployExamplesParseAndPlaceTheirParts) {
  ::setenv("TROUPE_MODEL_DIR", TROUPE_SHARED_DIR "/models", 1);
  auto three = load_cluster_config("deploy/cluster/three-nodes-two-models.yaml");
  ASSERT_TRUE(three) << three.error().what();
  ASSERT_EQ(three->models.size(), 2u);
  EXPECT_EQ(three->models[0].model.path,
            std::filesystem::path(TROUPE_SHARED_DIR "/models/stories260K/stories260K.gguf").lexically_normal().string());
  EXPECT_EQ(three->models[1].pp, 2);
  EXPECT_EQ(three->models[1].replicas[0].scheduler, "head");
  EXPECT_EQ(three->models[1].replicas[0].shards, (std::vector<std::string>{"worker1", "worker2"}));
  const auto on_w2 = shards_on(*three, "worker2");
  ASSERT_EQ(on_w2.size(), 2u);
  EXPECT_EQ(on_w2[1].key(), "stories260K-pp/0/shard1");
  EXPECT_EQ(on_w2[1].stage(), 1);
  EXPECT_EQ(shard_data_ports(*three, on_w2[1]).pp, 7540 + 3);  // the node's second shard: ports +2, +3

  auto tp = load_cluster_config("deploy/cluster/two-nodes-tp2.yaml");
  ASSERT_TRUE(tp) << tp.error().what();
  EXPECT_EQ(tp->models[0].tp, 2);
  EXPECT_EQ(shards_on(*tp, "worker")[0].rank(), 1);
  auto one = load_cluster_config("deploy/cluster/one-node.yaml");
  ASSERT_TRUE(one) << one.error().what();
  EXPECT_EQ(one->models[0].replicas.size(), 2u);
  EXPECT_EQ(one->models[0].model.replicas, 2);
  ::unsetenv("TROUPE_MODEL_DIR");
}

TEST(ClusterConfig, ShorthandPlacementAndDefaults) {
  auto c = parse("    tp: 2\n    replicas:\n      - node: w1\n      - {scheduler: head, shards: [w1, w2]}\n");
  ASSERT_TRUE(c) << c.error().what();
  const auto& m = c->models[0];
  EXPECT_EQ(m.model.path, "/models/stories260K/stories260K.gguf");
  EXPECT_EQ(m.replicas[0].scheduler, "w1");
  EXPECT_EQ(m.replicas[0].shards, (std::vector<std::string>{"w1", "w1"}));
  EXPECT_EQ(c->find_node("head")->data_port, 7000 + 100);
  EXPECT_EQ(c->heartbeat.interval_ms, 500);
  // w1 holds three shards in config order: replica 0 ranks 0 and 1, replica 1 rank 0.
  const auto on_w1 = shards_on(*c, "w1");
  ASSERT_EQ(on_w1.size(), 3u);
  EXPECT_EQ(shard_data_ports(*c, on_w1[2]).tp, 7100 + 4);
  EXPECT_FALSE(c->digest.empty());
  auto other = parse("    tp: 2\n    replicas:\n      - node: w2\n      - {scheduler: head, shards: [w1, w2]}\n");
  ASSERT_TRUE(other);
  EXPECT_NE(other->digest, c->digest);
}

TEST(ClusterConfig, MistakesNameTheKey) {
  EXPECT_EQ(error_of(base + "    replicas:\n      - {node: w3}\n"),
            "c.yaml: models[0].replicas[0].scheduler: unknown node 'w3' (nodes: head, w1, w2)");
  EXPECT_EQ(error_of(base + "    replicas:\n      - {scheduler: w1, shards: [w4]}\n"),
            "c.yaml: models[0].replicas[0].shards: unknown node 'w4' (nodes: head, w1, w2)");
  EXPECT_EQ(error_of(base + "    tp: 2\n    replicas:\n      - {scheduler: head, shards: [w1]}\n"),
            "c.yaml: models[0].replicas[0].shards: must name 2 node(s) (tp 2 x pp 1), got 1");
  EXPECT_EQ(error_of(base + "    replicas: 2\n"),
            "c.yaml: models[0].replicas: must be a non-empty list of placements, e.g. - {node: NAME}");
  EXPECT_EQ(error_of(base + "    replica: [{node: w1}]\n").rfind("c.yaml: models[0].replica: unknown key", 0), 0u);
  EXPECT_EQ(error_of(base + "    device: cuda:0\n    replicas: [{node: w1}]\n"),
            "c.yaml: models[0].replicas[0].shards: node 'w1' has no device cuda:0");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 7000, http_port: 7000}\nmodels: []\n"),
            "c.yaml: nodes[0].http_port: port 7000 on 127.0.0.1 is also nodes[0].port");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 7000}\nmodels: []\n"),
            "c.yaml: nodes: no node has an http_port: give the node that runs the gateway one");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, http_port: 80}\n"), "c.yaml: nodes[0].port: is required (the node's control-plane port)");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 1, http_port: 2}\n  - {name: a, port: 3}\n"), "c.yaml: nodes[1].name: 'a' is listed twice");
  EXPECT_EQ(error_of(base + "    replicas: [{node: w1}]\nheartbeat: {interval_ms: 500, timeout_ms: 400}\n"),
            "c.yaml: heartbeat.timeout_ms: must be larger than interval_ms (500)");
  // Two shards of a tp group on one host must not share data ports with another node's.
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 7000, http_port: 8000, data_port: 6998}\n"
                     "models:\n  - {name: m, path: x.gguf, tp: 2, replicas: [{node: a}]}\n"),
            "c.yaml: data port of shard m/0/shard1: port 7000 on 127.0.0.1 is also nodes[0].port");
}

TEST(ClusterConfig, HostileValuesAreRefusedNamingTheKey) {
  // A duplicate key (yaml-cpp would keep the first silently), top level and nested.
  EXPECT_EQ(error_of(base + "    replicas: [{node: w1}]\ncluster: u\n"),
            "c.yaml: cluster: duplicate key on lines 2 and 11 (give each key once)");
  EXPECT_EQ(error_of("nodes:\n  - name: a\n    port: 7000\n    http_port: 8000\n    port: 7001\n"),
            "c.yaml: nodes[0].port: duplicate key on lines 3 and 5 (give each key once)");
  EXPECT_EQ(error_of(base + "    tp: 100000\n    replicas: [{node: w1}]\n"),
            "c.yaml: models[0].tp: must be an integer in 1..256, got 100000");
  EXPECT_EQ(error_of(base + "    pp: -1\n    replicas: [{node: w1}]\n"), "c.yaml: models[0].pp: must be an integer in 1..256, got -1");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 70000, http_port: 80}\n"), "c.yaml: nodes[0].port: must be an integer in 1..65535, got 70000");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 0, http_port: 80}\n"), "c.yaml: nodes[0].port: must be an integer in 1..65535, got 0");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 1, http_port: 80, threads: 5000}\n"),
            "c.yaml: nodes[0].threads: must be an integer in 0..1024, got 5000");
  EXPECT_EQ(error_of(base + "    replicas: [{node: w1}]\nheartbeat: {interval_ms: 0}\n"),
            "c.yaml: heartbeat.interval_ms: must be an integer in 1..3600000, got 0");
  EXPECT_EQ(error_of(base + "    kv_cache_mb: 100000000\n    replicas: [{node: w1}]\n"),
            "c.yaml: models[0].kv_cache_mb: must be an integer in 1..16777216 (MiB), got 100000000");
  EXPECT_EQ(error_of(base + "    device: cuda:0\n    tp: 2\n    replicas: [{node: w1}]\n"),
            "c.yaml: models[0].device: cuda:0: tensor and pipeline parallelism (tp 2 x pp 1) run on the CPU only for now");
  ::unsetenv("TROUPE_TEST_UNSET_VAR");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 1, http_port: 80}\nmodels:\n  - name: m\n    path: ${TROUPE_TEST_UNSET_VAR}/m.gguf\n"
                     "    replicas: [{node: a}]\n"),
            "c.yaml: models[0].path: ${TROUPE_TEST_UNSET_VAR} on line 5 is not set (export it, or write "
            "${TROUPE_TEST_UNSET_VAR:-DEFAULT})");
}

/// stories260K's shape: 8 attention heads, 4 KV heads, 5 layers.
model_hparams stories_hp() {
  model_hparams hp;
  hp.n_heads = 8;
  hp.n_kv_heads = 4;
  hp.n_layers = 5;
  hp.dim = 64;
  hp.head_dim = 8;
  hp.ffn_dim = 172;
  return hp;
}

TEST(ClusterConfig, TpMustDivideBothHeadCountsAndPpTheLayers) {
  auto split = [](int tp, int pp) -> std::string {
    auto c = parse("    tp: " + std::to_string(tp) + "\n    pp: " + std::to_string(pp) + "\n    replicas: [{node: w1}]\n");
    if (!c) return c.error().message();
    auto st = check_model_split(*c, 0, stories_hp(), 1);
    return st ? std::string("(accepted)") : st.error().message();
  };
  EXPECT_EQ(split(3, 1), "c.yaml: models[0].tp: model 'm' has 8 attention heads and 4 KV heads; tp 3 must divide both");
  EXPECT_EQ(split(8, 1), "c.yaml: models[0].tp: model 'm' has 8 attention heads and 4 KV heads; tp 8 must divide both");
  EXPECT_EQ(split(1, 6), "c.yaml: models[0].pp: model 'm' has 5 layers; pp 6 must be at most that");
  EXPECT_EQ(split(2, 5), "(accepted)");
  EXPECT_EQ(split(4, 1), "(accepted)");
  // The rest of the layout's checks name the key too: 172 feed-forward rows over 8 ranks.
  model_hparams wide = stories_hp();
  wide.n_heads = wide.n_kv_heads = 8;
  auto c = parse("    tp: 8\n    replicas: [{node: w1}]\n");
  ASSERT_TRUE(c) << c.error().what();
  auto st = check_model_split(*c, 0, wide, 1);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message().rfind("c.yaml: models[0].tp: model 'm': parallel layout (tp rank 0/8, pp stage 0/1): feed-forward width 172", 0), 0u)
      << st.error().message();
}

TEST(ClusterConfig, TheModelFilesHeaderAndThePhysicalMemoryAreCheckedForTheNodesModels) {
  const std::string dir = TROUPE_SHARED_DIR "/models";
  auto c = parse_cluster_config(base + "    tp: 3\n    replicas: [{scheduler: head, shards: [w1, w1, w2]}]\n", "c.yaml", dir);
  ASSERT_TRUE(c) << c.error().what();
  for (const char* node : {"head", "w1", "w2"}) {
    auto st = check_model_files(*c, node, 0);
    ASSERT_FALSE(st) << node;
    EXPECT_EQ(st.error().message(), "c.yaml: models[0].tp: model 'm' has 8 attention heads and 4 KV heads; tp 3 must divide both");
  }
  auto big = parse_cluster_config(base + "    kv_cache_mb: 4096\n    replicas: [{scheduler: head, shards: [w1]}]\n", "c.yaml", dir);
  ASSERT_TRUE(big) << big.error().what();
  const auto st = check_model_files(*big, "w1", uint64_t{1} << 30);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "c.yaml: models[0].kv_cache_mb: 4096 MiB is more than this machine's physical memory (1024 MiB)");
  // kv_blocks too, by the blocks' size in this model: 5 layers x 4 KV heads x 8 x 16 tokens x K and V floats.
  auto blocks = parse_cluster_config(base + "    kv_blocks: 2147483647\n    replicas: [{node: w1}]\n", "c.yaml", dir);
  ASSERT_TRUE(blocks) << blocks.error().what();
  const auto bst = check_model_files(*blocks, "w1", uint64_t{1} << 30);
  ASSERT_FALSE(bst);
  EXPECT_EQ(bst.error().message(),
            "c.yaml: models[0].kv_blocks: 2147483647 blocks of 20480 bytes are more than this machine's physical memory (1024 MiB)");
  EXPECT_TRUE(check_model_files(*big, "head", uint64_t{1} << 30));  // the gateway holds no KV cache
  EXPECT_TRUE(check_model_files(*big, "w2", uint64_t{1} << 30));    // runs nothing of it, needs no file
  auto missing = parse_cluster_config(base + "    replicas: [{node: w1}]\n", "c.yaml", "/nonexistent");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(check_model_files(*missing, "w2", 0));  // w2 runs nothing of the model
  const auto gone = check_model_files(*missing, "w1", 0);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().message().rfind("c.yaml: models[0].path: model 'm': ", 0), 0u) << gone.error().message();
}

TEST(ClusterConfig, TlsFilesResolveAgainstTheConfigDirectoryPerNode) {
  const std::string one = "    replicas: [{node: w1}]\n";
  auto c = parse_cluster_config(base + one + "tls: {dir: certs}\n", "c.yaml", "/models", "/etc/troupe");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_TRUE(c->tls.enabled);
  const tls_files w1 = c->tls_files_of("w1");
  EXPECT_EQ(w1.ca, "/etc/troupe/certs/ca.pem");
  EXPECT_EQ(w1.cert, "/etc/troupe/certs/w1.pem");
  EXPECT_EQ(w1.key, "/etc/troupe/certs/w1.key");
  // Keys of their own override the directory; absolute paths stay.
  auto own = parse_cluster_config(base + one + "tls: {dir: certs, ca: /pki/ca.pem, key: \"keys/{node}-key.pem\"}\n", "c.yaml",
                                  "/models", "/etc/troupe");
  ASSERT_TRUE(own) << own.error().what();
  EXPECT_EQ(own->tls_files_of("head").ca, "/pki/ca.pem");
  EXPECT_EQ(own->tls_files_of("head").cert, "/etc/troupe/certs/head.pem");
  EXPECT_EQ(own->tls_files_of("head").key, "/etc/troupe/keys/head-key.pem");
  // load_cluster_config: relative to the file's directory, whatever TROUPE_MODEL_DIR says.
  ::setenv("TROUPE_MODEL_DIR", "/models", 1);
  auto three = load_cluster_config("deploy/cluster/three-nodes-two-models.yaml");
  ::unsetenv("TROUPE_MODEL_DIR");
  ASSERT_TRUE(three) << three.error().what();
  EXPECT_EQ(three->tls_files_of("worker1").cert, "deploy/cluster/certs/worker1.pem");
  EXPECT_EQ(three->digest, parse_cluster_config(read_text("deploy/cluster/three-nodes-two-models.yaml"), "x", "/m")->digest);
}

TEST(ClusterConfig, WithoutTlsEveryNodeMustBeOnLoopback) {
  const std::string one = "    replicas: [{node: w1}]\n";
  auto loopback = parse(one);  // base: 127.0.0.1 and the default host
  ASSERT_TRUE(loopback) << loopback.error().what();
  EXPECT_FALSE(loopback->tls.enabled);
  std::string remote = base;
  remote.replace(remote.find("{name: w2, port"), 15, "{name: w2, host: 10.0.0.7, port");
  EXPECT_EQ(error_of(remote + one),
            "c.yaml: tls: is required: node 'w2' listens on 10.0.0.7, not a loopback address, and nodes must authenticate each "
            "other there: add `tls: {dir: certs}` and make the files with `troupe certs --config FILE`");
  EXPECT_TRUE(parse_cluster_config(remote + one + "tls: {dir: certs}\n", "c.yaml", "/models"));
  for (const char* host : {"127.0.0.1", "127.8.9.10", "::1", "localhost"}) EXPECT_TRUE(is_loopback_host(host)) << host;
  for (const char* host : {"10.0.0.1", "128.0.0.1", "::2", "node1.example", "0.0.0.0"}) EXPECT_FALSE(is_loopback_host(host)) << host;
}

TEST(ClusterConfig, TlsAndHostMistakesNameTheKey) {
  const std::string one = "    replicas: [{node: w1}]\n";
  EXPECT_EQ(error_of(base + one + "tls: {ca: ca.pem, cert: x.pem}\n"), "c.yaml: tls.key: is required (or give tls.dir)");
  EXPECT_EQ(error_of(base + one + "tls: {dir: certs, certs: x}\n").rfind("c.yaml: tls.certs: unknown key", 0), 0u);
  EXPECT_EQ(error_of(base + one + "tls: {dir: certs, handshake_timeout_ms: 0}\n"),
            "c.yaml: tls.handshake_timeout_ms: must be an integer in 1..3600000, got 0");
  EXPECT_EQ(error_of(base + one + "tls: certs\n"), "c.yaml: tls: must be a mapping: {dir: DIR} or {ca: FILE, cert: FILE, key: FILE}");
  EXPECT_EQ(error_of("nodes:\n  - {name: ../x, port: 7000, http_port: 8000}\nmodels:\n  - {name: m, path: x.gguf, replicas: [{node: ../x}]}\n"
                     "tls: {dir: certs}\n"),
            "c.yaml: nodes[0].name: must be letters, digits, '.', '_' or '-', and not 'ca': tls names files after the nodes");
  EXPECT_EQ(error_of("nodes:\n  - {name: a, host: 0.0.0.0, port: 7000, http_port: 8000}\n"),
            "c.yaml: nodes[0].host: must be the address other nodes reach this node at, not a wildcard (0.0.0.0 would open "
            "the control port on every interface)");
}

}  // namespace
}  // namespace troupe::cluster
