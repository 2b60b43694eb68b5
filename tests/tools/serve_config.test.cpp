// `troupe serve --config FILE`: models and replicas from YAML, served for real; a bad config is
// refused at start-up with the key named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/tools/server_process.hpp"

namespace troupe::test {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

class ServeConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("troupe_serve_config_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::filesystem::path dir_;
};

TEST_F(ServeConfigFile, TwoReplicasFromYamlServeConcurrentRequests) {
  const std::string cfg = write("two.yaml", "models:\n  - name: tales\n    path: " + shared_dir +
                                                "/models/stories260K/stories260K.gguf\n    replicas: 2\n    threads: 1\n");
  server_process server({"--config", cfg});
  ASSERT_GT(server.port(), 0) << server.log();
  const auto models = run("curl -s " + sh_quote(server.url("/v1/models")));
  EXPECT_EQ(nlohmann::json::parse(models.out)["data"][0]["id"], "tales");
  std::vector<std::thread> clients;
  std::vector<std::string> texts(8), raw(8);
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      const auto r = run("curl -sS -H 'Content-Type: application/json' --data-binary " +
                         sh_quote(R"({"model":"tales","prompt":"Once upon a time","max_tokens":16,"temperature":0})") + " " +
                         sh_quote(server.url("/v1/completions")));
      raw[static_cast<size_t>(i)] = r.out + r.err;
      const auto j = nlohmann::json::parse(r.out, nullptr, false);
      if (j.is_object() && j.contains("choices")) texts[static_cast<size_t>(i)] = j["choices"][0]["text"];
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(texts[i], texts[0]) << raw[i];
  EXPECT_NE(texts[0].find("there was a little girl"), std::string::npos) << texts[0];
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(ServeConfigFile, ABadConfigIsRefusedNamingTheKey) {
  const std::string cfg = write("bad.yaml", "models:\n  - {name: x, path: x.gguf, replica: 2}\n");
  const auto r = run(troupe_bin() + " serve --port 0 --config " + sh_quote(cfg));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("models[0].replica: unknown key"), std::string::npos) << r.err;
}

TEST_F(ServeConfigFile, TheIssuesHostileConfigsAreRefusedAtStartNamingTheKey) {
  // Each started a server before: the KV budget capped silently, the second `server` ignored, the
  // unset variable expanded to "" (and the error named the path "/stories260K.gguf").
  const std::string model = shared_dir + "/models/stories260K/stories260K.gguf";
  struct bad_case {
    std::string text, error;
  };
  ::unsetenv("TROUPE_TEST_UNSET_VAR");
  for (const bad_case& c : {
           bad_case{"models:\n  - {name: a, path: " + model + ", kv_cache_mb: 100000000}\n",
                    "models[0].kv_cache_mb: must be an integer in 1..16777216 (MiB), got 100000000"},
           bad_case{"server: {port: 0}\nmodels:\n  - {name: a, path: " + model + "}\nserver: {port: 1}\n",
                    "server: duplicate key on lines 1 and 4"},
           bad_case{"models:\n  - name: a\n    path: ${TROUPE_TEST_UNSET_VAR}/stories260K.gguf\n",
                    "models[0].path: ${TROUPE_TEST_UNSET_VAR} on line 3 is not set"},
       }) {
    const std::string cfg = write("hostile.yaml", c.text);
    const auto r = run("timeout 60 " + troupe_bin() + " serve --port 0 --config " + sh_quote(cfg));
    EXPECT_EQ(r.exit_code, 1) << c.text << r.err;
    EXPECT_NE(r.err.find("hostile.yaml: " + c.error), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("listening"), std::string::npos) << r.err;
  }
}

TEST_F(ServeConfigFile, CheckReadsTheModelFilesAndStartsNothing) {
  const std::string model = shared_dir + "/models/stories260K/stories260K.gguf";
  const auto ok = run("timeout 60 " + troupe_bin() + " serve --check --config " +
                      sh_quote(write("ok.yaml", "models:\n  - {name: tales, path: " + model + ", replicas: 2}\n")));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("model tales: " + model + " (5 layers, 8 heads, 4 KV heads), 2 replicas on cpu"), std::string::npos) << ok.out;
  EXPECT_EQ(ok.err.find("listening"), std::string::npos) << ok.err;
  // kv_blocks by this model's block size (20480 bytes), beyond any machine's memory.
  const auto blocks = run("timeout 60 " + troupe_bin() + " serve --check --config " +
                          sh_quote(write("blocks.yaml", "models:\n  - {name: tales, path: " + model + ", kv_blocks: 2147483647}\n")));
  EXPECT_EQ(blocks.exit_code, 1);
  EXPECT_NE(blocks.err.find("blocks.yaml: models[0].kv_blocks: 2147483647 blocks of 20480 bytes are more than this machine's physical memory"),
            std::string::npos)
      << blocks.err;
  const auto missing = run("timeout 60 " + troupe_bin() + " serve --check --config " +
                           sh_quote(write("missing.yaml", "models:\n  - {name: gone, path: nowhere.gguf}\n")));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("missing.yaml: models[0].path: model 'gone': "), std::string::npos) << missing.err;
}

TEST_F(ServeConfigFile, AKvBudgetBeyondThePhysicalMemoryIsRefusedAtStart) {
  // 16 TiB: within the key's range, beyond this machine's memory.
  const std::string cfg = write("big.yaml", "models:\n  - {name: a, path: " + shared_dir +
                                                "/models/stories260K/stories260K.gguf, kv_cache_mb: 16777216}\n");
  const auto r = run("timeout 60 " + troupe_bin() + " serve --port 0 --config " + sh_quote(cfg));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("big.yaml: models[0].kv_cache_mb: 16777216 MiB is more than this machine's physical memory ("),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace troupe::test
