#include "runtime/config/serve_config.hpp"
#include "tests/runtime/config/parse_util.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace troupe {
namespace {

using test::error_of;
using test::parse;

TEST(ServeConfig, TheDeployExampleLoadsWithItsDefaults) {
  auto c = load_serve_config("deploy/troupe.yaml");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->server.host, "127.0.0.1");
  EXPECT_EQ(c->server.port, 8000);
  ASSERT_EQ(c->models.size(), 1u);
  const model_config& m = c->models[0];
  const model_config defaults;
  EXPECT_EQ(m.name, "stories260K");
  EXPECT_EQ(m.replicas, defaults.replicas);
  EXPECT_EQ(m.kv_cache_mb, defaults.kv_cache_mb);
  EXPECT_EQ(m.max_num_seqs, defaults.max_num_seqs);
  EXPECT_EQ(m.max_num_batched_tokens, defaults.max_num_batched_tokens);
  EXPECT_TRUE(m.enable_prefix_caching);
  // Relative to deploy/, normalised: the example serves ../shared's stories260K as it stands.
  EXPECT_EQ(m.path, "../shared/models/stories260K/stories260K.gguf");
  EXPECT_TRUE(std::filesystem::exists(m.path));
}

TEST(ServeConfig, SeveralModelsWithReplicasAndRelativeAndEnvPaths) {
  setenv("TROUPE_TEST_MODEL_DIR", "/models", 1);
  auto c = parse(R"(
models:
  - {name: a, path: a.gguf, replicas: 3, threads: 1, kv_blocks: 64}
  - {name: b, path: "${TROUPE_TEST_MODEL_DIR}/b.gguf", max_num_seqs: 8, enable_prefix_caching: false, repack: false}
)");
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->models.size(), 2u);
  EXPECT_EQ(c->models[0].path, "/base/a.gguf");
  EXPECT_EQ(c->models[0].replicas, 3);
  EXPECT_EQ(c->models[0].kv_blocks, 64);
  EXPECT_EQ(c->models[1].path, "/models/b.gguf");
  EXPECT_EQ(c->models[1].max_num_seqs, 8);
  EXPECT_FALSE(c->models[1].enable_prefix_caching);
  EXPECT_TRUE(c->models[0].repack);
  EXPECT_FALSE(c->models[1].repack);
}

TEST(ServeConfig, ErrorsNameTheKeyAndTheProblem) {
  EXPECT_NE(error_of("models: []").find("models: must be a non-empty list"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {name: a}").find("models[0].path: is required"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {name: a, path: x, replica: 2}").find("models[0].replica: unknown key"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {name: a, path: x, replicas: two}").find("models[0].replicas: must be an integer in 1..256, got two"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {name: a, path: x, replicas: 0}").find("models[0].replicas: must be an integer in 1..256, got 0"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {name: a, path: x}\n  - {name: a, path: y}").find("models[1].name: 'a' is listed twice"), std::string::npos);
  EXPECT_NE(error_of("server: {port: 70000}\nmodels:\n  - {name: a, path: x}").find("server.port: must be an integer in 0..65535, got 70000"), std::string::npos);
  EXPECT_NE(error_of("sever: {}\nmodels:\n  - {name: a, path: x}").find("sever: unknown key"), std::string::npos);
  EXPECT_NE(error_of("models: [").find("not valid YAML"), std::string::npos);
  EXPECT_NE(error_of("").find("the file is empty"), std::string::npos);
  auto missing = load_serve_config("/nonexistent/troupe.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), errc::not_found);
}

}  // namespace
}  // namespace troupe
