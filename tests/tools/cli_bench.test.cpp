// `troupe bench` as a user runs it: against a real `troupe serve` (stories260K) on loopback a
// concurrency sweep, shared-prefix, multi-turn and dataset-file runs complete with no failures and
// write JSON and SVG; against servers that cut streams or go silent every request is reported failed
// with its error, in bounded time; a warm-up that fails and bad settings stop it with the reason.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/runtime/loadgen/fake_server.hpp"
#include "tests/tools/run_process.hpp"
#include "tests/tools/server_process.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string model_path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

fs::path temp_dir() {
  const auto dir = fs::temp_directory_path() / ("troupe_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in, nullptr, false);
}

process_result bench(const std::string& url, const std::string& args) {
  return run(troupe_bin() + " bench --url " + url + " --no-progress " + args);
}

class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new server_process({"--model", "stories=" + model_path, "--threads", "2"});
    ASSERT_GT(server_->port(), 0) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->stop(), 0) << server_->log();
    delete server_;
    server_ = nullptr;
  }
  static std::string url() { return server_->url(""); }
  static server_process* server_;
};
server_process* BenchCli::server_ = nullptr;

TEST_F(BenchCli, ConcurrencySweepCompletesAndWritesJsonAndSvg) {
  const auto dir = temp_dir();
  const auto json_path = dir / "sweep.json", svg_path = dir / "sweep.svg";
  const auto r = bench(url(), "--model " + sh_quote("stories=" + model_path) +
                                  " --num-prompts 12 --input-len 24 --output-len 8 --max-concurrency 1,4 --temperature 0 --seed 3"
                                  " --goodput ttft:60000 --json " + json_path.string() + " --plot " + svg_path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("Serving Benchmark Result"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("P99 TTFT (ms):"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Errors"), std::string::npos) << r.out;

  const auto j = read_json(json_path);
  ASSERT_TRUE(j.is_object()) << "not JSON: " << slurp(json_path);
  EXPECT_EQ(j.at("model_id"), "stories");
  ASSERT_EQ(j.at("runs").size(), 2u);
  const int caps[] = {1, 4};
  for (size_t k = 0; k < 2; ++k) {
    const auto& run = j["runs"][k];
    EXPECT_EQ(run.at("max_concurrency"), caps[k]);
    EXPECT_EQ(run.at("request_rate"), "inf");
    EXPECT_EQ(run.at("completed"), 12) << run.dump().substr(0, 2000);
    EXPECT_EQ(run.at("failed"), 0);
    EXPECT_GE(run.at("max_concurrent_requests").get<int>(), 1);
    EXPECT_LE(run.at("max_concurrent_requests").get<int>(), caps[k]);
    EXPECT_GT(run.at("duration").get<double>(), 0.0);
    EXPECT_GT(run.at("request_throughput").get<double>(), 0.0);
    EXPECT_GT(run.at("output_throughput").get<double>(), 0.0);
    EXPECT_GT(run.at("total_token_throughput").get<double>(), run.at("output_throughput").get<double>());
    EXPECT_DOUBLE_EQ(run.at("request_goodput").get<double>(), run.at("request_throughput").get<double>());  // a 60 s TTFT goal
    for (const std::string m : {"ttft", "tpot", "itl", "e2el"})
      for (const std::string stat : {"mean_", "median_", "std_", "p90_", "p99_"})
        EXPECT_TRUE(run.contains(stat + m + "_ms") && run[stat + m + "_ms"].is_number()) << stat + m + "_ms";
    EXPECT_GT(run.at("mean_ttft_ms").get<double>(), 0.0);
    EXPECT_GE(run.at("p99_e2el_ms").get<double>(), run.at("median_e2el_ms").get<double>());
    ASSERT_EQ(run.at("requests").size(), 12u);
    int64_t in = 0, out = 0;
    for (const auto& q : run["requests"]) {
      EXPECT_TRUE(q.at("success").get<bool>()) << q.at("error");
      EXPECT_TRUE(q.at("usage_from_server").get<bool>());
      EXPECT_GE(q.at("output_tokens").get<int>(), 1);
      EXPECT_LE(q.at("output_tokens").get<int>(), 8);
      EXPECT_GT(q.at("prompt_tokens").get<int>(), 20);  // 24 tokens, the server counting BOS
      EXPECT_GE(q.at("latency_s").get<double>(), q.at("ttft_s").get<double>());
      in += q["prompt_tokens"].get<int64_t>();
      out += q["output_tokens"].get<int64_t>();
    }
    EXPECT_EQ(run.at("total_input_tokens"), in);
    EXPECT_EQ(run.at("total_output_tokens"), out);
  }
  const std::string svg = slurp(svg_path);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u) << svg.substr(0, 200);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("max concurrency"), std::string::npos);
  size_t lines = 0;
  for (size_t at = 0; (at = svg.find("<polyline", at)) != std::string::npos; ++at) ++lines;
  EXPECT_GE(lines, 6u);
  fs::remove_all(dir);
}

TEST_F(BenchCli, RateSweepRunsOncePerRateWithTheServersFirstModel) {
  // No --model: the name comes from /v1/models, the tokenizer is troupe serve's default model.
  const auto dir = temp_dir();
  const auto json_path = dir / "rates.json", svg_path = dir / "rates.svg";
  const auto r = bench(url(), "--rates 25,inf --burstiness 0.5 --num-prompts 8 --input-len 16 --output-len 4 --temperature 0"
                              " --metric-percentiles 50,99.9 --json " + json_path.string() + " --plot " + svg_path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("P99.9 ITL (ms):"), std::string::npos) << r.out;
  const auto j = read_json(json_path);
  EXPECT_EQ(j.at("model_id"), "stories");
  ASSERT_EQ(j.at("runs").size(), 2u);
  const auto& paced = j["runs"][0];
  EXPECT_EQ(paced.at("request_rate"), 25.0);
  EXPECT_EQ(paced.at("burstiness"), 0.5);
  EXPECT_EQ(paced.at("max_concurrency"), nullptr);
  EXPECT_TRUE(paced.contains("p99.9_ttft_ms"));
  EXPECT_EQ(paced.at("completed"), 8);
  // Open loop: released at the precomputed, increasing times (the first after one interval).
  double prev = 0.0;
  for (const auto& q : paced.at("requests")) {
    EXPECT_GT(q.at("scheduled_s").get<double>(), prev);
    prev = q.at("scheduled_s").get<double>();
  }
  const auto& burst = j["runs"][1];
  EXPECT_EQ(burst.at("request_rate"), "inf");
  EXPECT_EQ(burst.at("completed"), 8);
  for (const auto& q : burst.at("requests")) EXPECT_EQ(q.at("scheduled_s").get<double>(), 0.0);
  EXPECT_NE(slurp(svg_path).find("request rate (req/s)"), std::string::npos);
  fs::remove_all(dir);
}

TEST_F(BenchCli, SharedPrefixMultiTurnAndDatasetFileRunsComplete) {
  const auto dir = temp_dir();
  const std::string model = " --model " + sh_quote("stories=" + model_path) + " --temperature 0 --output-len 6 ";
  {
    const auto json_path = dir / "prefix.json";
    const auto r = bench(url(), model + "--dataset shared-prefix --num-prefixes 2 --prefix-len 48 --suffix-len 8 --num-prompts 8"
                                        " --request-rate 40 --json " + json_path.string());
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    const auto j = read_json(json_path);
    EXPECT_EQ(j.at("runs")[0].at("completed"), 8);
    EXPECT_EQ(j.at("runs")[0].at("request_rate"), 40.0);
  }
  {
    const auto json_path = dir / "turns.json";
    const auto r = bench(url(), model + "--dataset multi-turn --turns 3 --num-prompts 9 --input-len 10 --request-rate 100 --json " +
                                    json_path.string());
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    const auto j = read_json(json_path);
    EXPECT_EQ(j.at("endpoint"), "/v1/chat/completions");
    const auto& run = j.at("runs")[0];
    EXPECT_EQ(run.at("completed"), 9);
    // Each turn left only after the reply to the one before it had arrived, and its prompt (the
    // history) is longer.
    std::map<std::pair<int, int>, nlohmann::json> turns;
    for (const auto& q : run.at("requests")) turns[{q.at("conversation").get<int>(), q.at("turn").get<int>()}] = q;
    ASSERT_EQ(turns.size(), 9u);
    for (const auto& [key, q] : turns) {
      if (key.second == 0) continue;
      const auto& prev = turns.at({key.first, key.second - 1});
      EXPECT_GE(q.at("start_s").get<double>(), prev.at("start_s").get<double>() + prev.at("latency_s").get<double>());
      EXPECT_GT(q.at("prompt_tokens").get<int>(), prev.at("prompt_tokens").get<int>());
    }
  }
  {
    nlohmann::json sharegpt = nlohmann::json::array();
    for (const char* p : {"Once upon a time there was a little dog who wanted to play in the park",
                          "Lily and Tom went to the beach to build a big sand castle with a flag",
                          "The sun was shining and the birds were singing in the tall green trees"})
      sharegpt.push_back({{"conversations", {{{"from", "human"}, {"value", p}}, {{"from", "gpt"}, {"value", "They had a lot of fun together."}}}}});
    const auto data = dir / "sharegpt.json", json_path = dir / "file.json";
    std::ofstream(data) << sharegpt.dump();
    const auto r = bench(url(), model + "--dataset " + data.string() + " --num-prompts 3 --json " + json_path.string());
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(read_json(json_path).at("runs")[0].at("completed"), 3);
  }
  fs::remove_all(dir);
}

TEST(BenchCliFailures, CutAndSilentStreamsAreReportedAsFailuresInBoundedTime) {
  const auto dir = temp_dir();
  for (const bool silent : {false, true}) {
    fake_server server([&](int fd, const std::string&) {
      if (silent) return server.hold(fd);
      fake_server::send_all(fd, fake_server::stream_head() + "data: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\n\n");
    });
    const auto json_path = dir / "failures.json";
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = bench(server.url(), "--model m --tokenizer " + sh_quote(model_path) +
                                           " --warmup 0 --num-prompts 5 --input-len 8 --output-len 4 --request-rate 50 --timeout 1"
                                           " --json " + json_path.string());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
    EXPECT_EQ(r.exit_code, 1) << r.err << r.out;  // nothing completed
    EXPECT_EQ(server.connections(), 5);
    const std::string error = silent ? "timed out" : "the stream ended before data: [DONE] (after 1 chunks)";
    EXPECT_NE(r.out.find("5 x "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(error), std::string::npos) << r.out;
    const auto j = read_json(json_path);
    ASSERT_TRUE(j.is_object()) << r.err;
    const auto& run = j.at("runs")[0];
    EXPECT_EQ(run.at("completed"), 0);
    EXPECT_EQ(run.at("failed"), 5);
    for (const auto& q : run.at("requests")) {
      EXPECT_FALSE(q.at("success").get<bool>());
      EXPECT_NE(q.at("error").get<std::string>().find(error), std::string::npos) << q.at("error");
    }
  }
  fs::remove_all(dir);
}

TEST(BenchCliFailures, FailedWarmupStopsWithTheError) {
  fake_server server([](int, const std::string&) {});  // read the request, close without a word
  const auto r = bench(server.url(), "--model m --tokenizer " + sh_quote(model_path) + " --num-prompts 5 --input-len 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("warm-up failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Empty reply from server"), std::string::npos) << r.err;
  EXPECT_EQ(server.connections(), 1);  // the one warm-up request, none of the five
}

TEST(BenchCliFailures, BadSettingsFailBeforeAnyRequest) {
  fake_server server([](int, const std::string&) {});
  const std::string base = "--model m --tokenizer " + sh_quote(model_path) + " ";
  const std::pair<std::string, std::string> cases[] = {
      {"--rates 1,2 --max-concurrency 1,2", "not both"},
      {"--rates 1,x", "'x' is not a number"},
      {"--dataset no-such-dataset", "neither random"},
      {"--goodput itl:5", "unknown metric 'itl'"},
      {"--goodput ttft:5 tpot:x", "'x' is not a number"},
      {"--dataset multi-turn --endpoint /v1/completions", "need --endpoint /v1/chat/completions"},
      {"--metric-percentiles 0", "not in (0, 100]"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = bench(server.url(), base + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
  }
  EXPECT_EQ(server.connections(), 0);
}

}  // namespace
}  // namespace troupe::test
