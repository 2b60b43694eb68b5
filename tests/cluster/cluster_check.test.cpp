// `troupe node` refuses what would leave a replica down for good (issue 11): a tp that does not divide
// the model's heads, and a duplicate key, fail `--check` and the start naming the key and the counts;
// a shard that cannot load makes its node exit non-zero instead of the gateway answering "still
// loading" forever.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/cluster/node_process.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ClusterCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe_cluster_check_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// One node `head` with a gateway, running every part of model `tales` (extra: more of its keys).
  std::string config(const std::string& extra) {
    yaml_ = on_free_ports("cluster: check\nnodes:\n  - {name: head, host: 127.0.0.1, port: 7410, http_port: 8000, "
                          "data_port: 7510, threads: 1, devices: [cpu, \"cuda:99\"]}\nmodels:\n  - name: tales\n"
                          "    path: stories260K/stories260K.gguf\n" + extra + "    replicas:\n      - {node: head}\n");
    const auto p = dir_ / "cluster.yaml";
    std::ofstream(p) << yaml_;
    return p.string();
  }
  /// `troupe node --config cfg --name head [--check]`, with the shared models as TROUPE_MODEL_DIR.
  process_result node(const std::string& cfg, bool check) {
    return run("TROUPE_MODEL_DIR=" + sh_quote(fs::absolute(shared_dir + "/models").string()) + " timeout 60 " +
               sh_quote(troupe_bin()) + " node --config " + sh_quote(cfg) + " --name head" + (check ? " --check" : ""));
  }
  fs::path dir_;
  std::string yaml_;
};

TEST_F(ClusterCheck, TpThreeOverEightHeadsFailsTheCheckAndTheStartNamingTheHeadCounts) {
  const std::string cfg = config("    tp: 3\n");
  const std::string want = "models[0].tp: model 'tales' has 8 attention heads and 4 KV heads; tp 3 must divide both";
  const auto check = node(cfg, true);
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  EXPECT_NE(check.err.find(want), std::string::npos) << check.err;
  EXPECT_EQ(check.out.find("shard"), std::string::npos) << check.out;  // no placement printed as if fine
  const auto start = node(cfg, false);  // exits at once: no node, no gateway answering 503
  EXPECT_EQ(start.exit_code, 1) << start.err;
  EXPECT_NE(start.err.find(want), std::string::npos) << start.err;
  EXPECT_EQ(start.err.find("listening"), std::string::npos) << start.err;
}

TEST_F(ClusterCheck, PpBeyondTheLayersFailsTheCheck) {
  const auto r = node(config("    pp: 6\n"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("models[0].pp: model 'tales' has 5 layers; pp 6 must be at most that"), std::string::npos) << r.err;
}

TEST_F(ClusterCheck, ADuplicateKeyFailsTheCheckNamingItAndBothLines) {
  const auto r = node(config("    tp: 2\n    tp: 3\n"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("models[0].tp: duplicate key on lines 7 and 8"), std::string::npos) << r.err;
}

TEST_F(ClusterCheck, AGoodSplitPassesTheCheck) {
  const auto r = node(config("    tp: 2\n"), true);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("shard tales/0/shard1 (tp rank 1/2"), std::string::npos) << r.out;
}

TEST_F(ClusterCheck, AShardThatCannotLoadStopsItsNodeWithTheError) {
  // The device passes the config (the node lists it) but no machine has a 100th GPU: the shard
  // fails when it loads. Before, the node lived on and its gateway answered 503 "still loading".
  const std::string cfg = config("    device: \"cuda:99\"\n");
  node_process n(cfg, "head", dir_);
  int code = -1;
  ASSERT_TRUE(eventually([&] { return (code = n.exited()) >= 0; }, 60s)) << n.log();
  EXPECT_EQ(code, 1) << n.log();
  const std::string log = n.log();
  EXPECT_NE(log.find("shard tales/0/shard0 cannot load: "), std::string::npos) << log;
  EXPECT_NE(log.find("cuda:99"), std::string::npos) << log;
}

}  // namespace
}  // namespace troupe::test
