// The cluster config: the deploy examples parse and place what their comments say; mistakes are
// refused naming the key and the problem.
#include "cluster/cluster_config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

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

}  // namespace
}  // namespace troupe::cluster
