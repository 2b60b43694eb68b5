// Hostile requests against a real `troupe serve` (issue 11): each gets its own clear 400, the server
// keeps answering everyone else, and its memory does not grow with them.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/tools/hostile_peer.hpp"
#include "tests/tools/server_process.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

struct reply {
  int status = 0;
  std::string body;
  double seconds = 0;
};

/// POSTs the file at body_path (or GETs when empty) with curl.
reply curl_file(const server_process& s, const std::string& path, const std::string& body_path = "") {
  std::string cmd = "curl -sS --max-time 120 -w '\\n%{http_code} %{time_total}' ";
  if (!body_path.empty()) cmd += "-H 'Content-Type: application/json' --data-binary @" + sh_quote(body_path) + " ";
  const auto r = run(cmd + sh_quote(s.url(path)));
  reply h;
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return h;
  h.body = r.out.substr(0, nl);
  std::sscanf(r.out.c_str() + nl + 1, "%d %lf", &h.status, &h.seconds);
  return h;
}

class ServeHostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("troupe_hostile_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    server_ = new server_process({"--model", "stories=" + stories, "--threads", "1"});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->stop(), 0) << server_->log();
    delete server_;
    fs::remove_all(dir_);
  }
  void SetUp() override { ASSERT_GT(server_->port(), 0) << "server did not start:\n" << server_->log(); }

  static std::string write_body(const std::string& name, const std::string& body) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << body;
    return p.string();
  }

  static fs::path dir_;
  static server_process* server_;
};
fs::path ServeHostile::dir_;
server_process* ServeHostile::server_ = nullptr;

// Regression: a 10 MB prompt was tokenized whole on an HTTP thread (about 10 s, 500 MB) before its
// context_length_exceeded; two of them held up /health for 8.5 s.
TEST_F(ServeHostile, AHugePromptIsRejectedBeforeTokenizingAndHealthStaysResponsive) {
  std::string text;
  while (text.size() < 10u << 20) text += "Once upon a time there was a little girl named Lily. ";
  const std::string completion = write_body("big_completion.json",
      nlohmann::json{{"model", "stories"}, {"prompt", text}, {"max_tokens", 4}}.dump());
  const std::string chat = write_body("big_chat.json",
      nlohmann::json{{"model", "stories"}, {"messages", {{{"role", "user"}, {"content", text}}}}}.dump());
  const double rss_before = rss_mib(server_->pid());

  auto a = std::async(std::launch::async, [&] { return curl_file(*server_, "/v1/completions", completion); });
  auto b = std::async(std::launch::async, [&] { return curl_file(*server_, "/v1/chat/completions", chat); });
  // /health answers while both are in flight (it took 8.5 s before the fix).
  const reply health = curl_file(*server_, "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_LT(health.seconds, 2.0);

  for (auto* f : {&a, &b}) {
    const reply r = f->get();
    ASSERT_EQ(r.status, 400) << r.body.substr(0, 300);
    const auto err = nlohmann::json::parse(r.body).at("error");
    EXPECT_EQ(err.at("code"), "context_length_exceeded");
    EXPECT_NE(err.at("message").get<std::string>().find("at least"), std::string::npos) << err;
  }
  // The bodies themselves are 10 MB each; tokenizing them used to add about 500 MB.
  EXPECT_LT(rss_mib(server_->pid()) - rss_before, 100.0);
  // A prompt that fits is still served.
  const std::string small = write_body("small.json",
      nlohmann::json{{"model", "stories"}, {"prompt", "Once upon a time"}, {"max_tokens", 4}}.dump());
  EXPECT_EQ(curl_file(*server_, "/v1/completions", small).status, 200);
}

// Regression: 1e309 made the JSON parser throw out_of_range, which became a 500.
TEST_F(ServeHostile, ANumberBeyondADoubleIs400NamingTheField) {
  const std::string body = write_body("huge_number.json",
      R"({"model": "stories", "prompt": "Once", "max_tokens": 2, "temperature": 1e309})");
  const reply r = curl_file(*server_, "/v1/completions", body);
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body).at("error").at("param"), "temperature") << r.body;
  const std::string bare = write_body("bare.json", "1e309");
  EXPECT_EQ(curl_file(*server_, "/v1/chat/completions", bare).status, 400);
}

/// troupe_prefix_cache_hits_total summed over models.
double prefix_hits(const server_process& s) {
  const auto r = run("curl -sS --max-time 30 " + sh_quote(s.url("/metrics")));
  double sum = 0;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("troupe_prefix_cache_hits_total{", 0) == 0) sum += std::stod(line.substr(line.rfind(' ') + 1));
  return sum;
}

// Regression: /metrics was a cross-client oracle (the hit counter rose when a guess shared the start
// of another client's prompt). With cache_salt, a guess under another salt hits nothing.
TEST_F(ServeHostile, CacheSaltKeepsAnotherClientsPrefixOutOfReach) {
  std::string secret;
  for (int i = 0; i < 12; ++i) secret += "Lily and Tom went to the park to play with a big red ball. ";
  auto send = [&](const std::string& name, const std::string& salt) {
    nlohmann::json body{{"model", "stories"}, {"prompt", secret}, {"max_tokens", 2}};
    if (!salt.empty()) body["cache_salt"] = salt;
    return curl_file(*server_, "/v1/completions", write_body(name, body.dump())).status;
  };
  ASSERT_EQ(send("victim.json", "victim-salt-9f2c"), 200);
  const double before = prefix_hits(*server_);
  ASSERT_EQ(send("guess_other_salt.json", "attacker-salt-11aa"), 200);
  ASSERT_EQ(send("guess_unsalted.json", ""), 200);
  EXPECT_EQ(prefix_hits(*server_), before) << "a guess under another salt hit the victim's cached prefix";
  ASSERT_EQ(send("victim_again.json", "victim-salt-9f2c"), 200);
  EXPECT_GE(prefix_hits(*server_) - before, 32) << "the victim's own salt should still hit its prefix";
}

}  // namespace
}  // namespace troupe::test
