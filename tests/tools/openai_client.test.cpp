// The official OpenAI client (npm `openai`) against a real `troupe serve` on loopback. Skipped, not
// passed, where Node.js or the package is missing (deploy/install-deps.sh installs it).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/tools/server_process.hpp"

namespace troupe::test {
namespace {

TEST(OpenAIClient, CompletionsChatStreamingSeedsStopsAndErrors) {
  const std::string shared_dir = TROUPE_SHARED_DIR;
  const auto script = std::filesystem::current_path() / "tests/node/openai_client.mjs";
  if (run("node --version").exit_code != 0) GTEST_SKIP() << "node is not installed";
  if (!std::filesystem::exists(script.parent_path() / "node_modules/openai"))
    GTEST_SKIP() << "npm package openai is not installed (run deploy/install-deps.sh)";
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  std::string expected;
  const auto golden = nlohmann::json::parse(in);
  for (const auto& c : golden.at("cases"))
    if (c.at("id") == "once_upon") expected = c.at("text");
  server_process server({"--model", "stories=" + shared_dir + "/models/stories260K/stories260K.gguf"});
  ASSERT_GT(server.port(), 0) << server.log();
  const auto r = run("node " + sh_quote(script.string()) + " " + sh_quote(server.url("/v1")) + " stories " + sh_quote(expected));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace troupe::test
