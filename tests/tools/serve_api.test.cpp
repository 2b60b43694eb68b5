// `troupe serve` end to end: a real server process on loopback, the real curl client, real model
// files. Greedy outputs must equal the reference ids' text; bad requests get OpenAI-shaped errors.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/tools/server_process.hpp"
#include "tests/tools/sse.hpp"

namespace troupe::test {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;
const std::string stories = shared_dir + "/models/stories260K/stories260K.gguf";
const std::string tiny = shared_dir + "/models/llama2-tiny-random/llama-2-tiny-random.gguf";

nlohmann::json golden_case(const std::string& id) {
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  const auto golden = nlohmann::json::parse(in);  // named: a range-for over a temporary's member dangles
  for (const auto& c : golden.at("cases"))
    if (c.at("id") == id) return c;
  return {};
}

struct http_reply {
  int status = 0;
  std::string body;
};

/// curl: POST a JSON body (or GET when body is empty); the status comes from -w.
http_reply curl(const server_process& s, const std::string& path, const std::string& body = "", const std::string& extra = "") {
  std::string cmd = "curl -sS -N --max-time 120 -w '\\n%{http_code}' " + extra + " ";
  if (!body.empty()) cmd += "-H 'Content-Type: application/json' --data-binary " + sh_quote(body) + " ";
  const auto r = run(cmd + sh_quote(s.url(path)));
  http_reply h;
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return h;
  h.body = r.out.substr(0, nl);
  h.status = std::atoi(r.out.c_str() + nl + 1);
  return h;
}

std::string lstrip(std::string s) {
  s.erase(0, s.find_first_not_of(" \n"));
  return s;
}

/// Concatenated text of an SSE completion stream, and whether it ended with [DONE].
std::pair<std::string, bool> read_stream(const std::string& body, bool chat) {
  const sse_result r = read_sse(body, chat);
  return {r.text, r.done};
}

class ServeApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new server_process({"--model", "stories=" + stories, "--model", "tiny=" + tiny, "--threads", "2"});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->stop(), 0) << "the server did not drain and exit cleanly:\n" << server_->log();
    delete server_;
  }
  void SetUp() override { ASSERT_GT(server_->port(), 0) << "server did not start:\n" << server_->log(); }
  static server_process* server_;
};
server_process* ServeApi::server_ = nullptr;

TEST_F(ServeApi, HealthReadyAndModels) {
  EXPECT_EQ(curl(*server_, "/health").status, 200);
  EXPECT_EQ(curl(*server_, "/ready").status, 200);
  const auto m = curl(*server_, "/v1/models");
  ASSERT_EQ(m.status, 200);
  const auto j = nlohmann::json::parse(m.body);
  std::vector<std::string> ids;
  for (const auto& d : j.at("data")) ids.push_back(d.at("id"));
  EXPECT_EQ(ids, (std::vector<std::string>{"stories", "tiny"}));
}

TEST_F(ServeApi, GreedyCompletionEqualsTheReferenceWithUsage) {
  const auto c = golden_case("once_upon");
  const auto r = curl(*server_, "/v1/completions",
                      R"({"model":"stories","prompt":"Once upon a time","max_tokens":64,"temperature":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j.at("object"), "text_completion");
  EXPECT_EQ(lstrip(j["choices"][0]["text"]), lstrip(c.at("text")));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 64);
  EXPECT_EQ(j["usage"]["total_tokens"], 69);
}

TEST_F(ServeApi, StreamingGivesTheSameTextAndEndsWithDone) {
  const std::string body = R"({"model":"stories","prompt":"Tom and his dog went to the","max_tokens":64,"temperature":0)";
  const auto whole = curl(*server_, "/v1/completions", body + "}");
  const auto streamed = curl(*server_, "/v1/completions", body + R"(,"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_EQ(whole.status, 200);
  ASSERT_EQ(streamed.status, 200);
  const auto [text, done] = read_stream(streamed.body, false);
  EXPECT_TRUE(done) << streamed.body;
  EXPECT_EQ(text, nlohmann::json::parse(whole.body)["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(lstrip(text), lstrip(golden_case("tom_dog").at("text")));
  EXPECT_NE(streamed.body.find("\"usage\""), std::string::npos);
}

TEST_F(ServeApi, ChatCompletionStreamingAndNot) {
  const std::string body = R"({"model":"stories","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":20,"temperature":0)";
  const auto r = curl(*server_, "/v1/chat/completions", body + "}");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j.at("object"), "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string text = j["choices"][0]["message"]["content"];
  EXPECT_FALSE(text.empty());
  const auto s = curl(*server_, "/v1/chat/completions", body + R"(,"stream":true})");
  const auto [streamed, done] = read_stream(s.body, true);
  EXPECT_TRUE(done);
  EXPECT_EQ(streamed, text);
}

TEST_F(ServeApi, SeedsReproduceAndNGivesSeveralChoices) {
  const std::string body = R"({"model":"stories","prompt":"Lily","max_tokens":30,"temperature":1.0,"n":2,"seed":7})";
  const auto a = curl(*server_, "/v1/completions", body), b = curl(*server_, "/v1/completions", body);
  ASSERT_EQ(a.status, 200) << a.body;
  const auto ja = nlohmann::json::parse(a.body), jb = nlohmann::json::parse(b.body);
  ASSERT_EQ(ja["choices"].size(), 2u);
  EXPECT_EQ(ja["choices"], jb["choices"]);
  EXPECT_NE(ja["choices"][0]["text"], ja["choices"][1]["text"]);
  EXPECT_EQ(ja["usage"]["completion_tokens"], 60);
}

TEST_F(ServeApi, EachOfNForkedChoicesEqualsTheSingleRequestWithItsSeed) {
  // A prompt over a 16-token block: the choices share its KV (copy-on-write forks on the server).
  const std::string head = R"({"model":"stories","prompt":"Once upon a time, there was a little girl named Lily. )"
                           R"(She loved to play","max_tokens":24,"temperature":1.0,)";
  const auto n = curl(*server_, "/v1/completions", head + R"("n":3,"seed":11})");
  ASSERT_EQ(n.status, 200) << n.body;
  const auto jn = nlohmann::json::parse(n.body);
  ASSERT_EQ(jn["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto one = curl(*server_, "/v1/completions", head + R"("seed":)" + std::to_string(11 + i) + "}");
    ASSERT_EQ(one.status, 200) << one.body;
    const auto j1 = nlohmann::json::parse(one.body);
    EXPECT_EQ(jn["choices"][i]["text"], j1["choices"][0]["text"]) << "choice " << i;
  }
  EXPECT_NE(jn["choices"][0]["text"], jn["choices"][1]["text"]);
}

TEST_F(ServeApi, StopStringEndsTheTextBeforeIt) {
  const auto r = curl(*server_, "/v1/completions",
                      R"({"model":"stories","prompt":"Once upon a time","max_tokens":64,"temperature":0,"stop":["Lily"]})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(lstrip(j["choices"][0]["text"]), ", there was a little girl named ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServeApi, TwoModelsAreRoutedByName) {
  const auto r = curl(*server_, "/v1/completions", R"({"model":"tiny","prompt":"Hello","max_tokens":5,"temperature":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
}

TEST_F(ServeApi, BadRequestsGetTheirStatusAndAnOpenAIErrorBody) {
  struct bad_case {
    std::string body;
    int status;
    std::string code_or_param;
  };
  for (const auto& c : std::vector<bad_case>{
           {R"({"model":"nope","prompt":"x"})", 404, "model_not_found"},
           {R"({"model":"stories","prompt":"x",)", 400, ""},
           {R"({"model":"stories","prompt":"x","temperature":-1})", 400, "temperature"},
           {R"({"model":"stories","prompt":"x","max_tokens":"many"})", 400, "max_tokens"},
           {R"({"prompt":"x"})", 400, "model"},
       }) {
    const auto r = curl(*server_, "/v1/completions", c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    if (!c.code_or_param.empty())
      EXPECT_NE(r.body.find(c.code_or_param), std::string::npos) << r.body;
  }
  std::string long_prompt;
  for (int i = 0; i < 3000; ++i) long_prompt += "once upon a time ";
  const auto r = curl(*server_, "/v1/completions", R"({"model":"stories","prompt":")" + long_prompt + R"("})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("context_length_exceeded"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_EQ(curl(*server_, "/v1/nothing").status, 404);
  EXPECT_EQ(curl(*server_, "/v1/completions").status, 405);  // GET on a POST endpoint
}

TEST_F(ServeApi, SixtyFourConcurrentStreamsAllCompleteWithTheGreedyText) {
  const auto c = golden_case("once_upon");
  std::vector<std::thread> clients;
  std::vector<std::pair<std::string, bool>> results(64);
  for (int i = 0; i < 64; ++i)
    clients.emplace_back([&, i] {
      const auto r = curl(*server_, "/v1/completions",
                          R"({"model":"stories","prompt":"Once upon a time","max_tokens":64,"temperature":0,"stream":true})");
      results[static_cast<size_t>(i)] = read_stream(r.body, false);
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 64; ++i) {
    EXPECT_TRUE(results[static_cast<size_t>(i)].second) << "stream " << i << " did not end with [DONE]";
    EXPECT_EQ(lstrip(results[static_cast<size_t>(i)].first), lstrip(c.at("text"))) << "stream " << i;
  }
}

double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  double total = 0;
  while (std::getline(in, line))
    if (line.rfind(name, 0) == 0 && (line[name.size()] == ' ' || line[name.size()] == '{'))
      total += std::stod(line.substr(line.rfind(' ') + 1));
  return total;
}

TEST_F(ServeApi, ASharedLongPrefixIsServedFromThePrefixCacheWithTheSameTokens) {
  // A prefix no other test's prompt or output shares, so the first request finds nothing cached.
  std::string prompt = "Ben and Sue found an old map under the bed.";
  for (int i = 0; i < 6; ++i) prompt += " They walked to the big tree and looked for the hidden box.";
  const std::string body = R"({"model":"stories","max_tokens":24,"temperature":0,"prompt":")" + prompt + R"("})";
  const auto m0 = curl(*server_, "/metrics");
  const auto first = curl(*server_, "/v1/completions", body);
  const auto m1 = curl(*server_, "/metrics");
  const auto second = curl(*server_, "/v1/completions", body);
  const auto m2 = curl(*server_, "/metrics");
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(second.status, 200) << second.body;
  const auto j1 = nlohmann::json::parse(first.body), j2 = nlohmann::json::parse(second.body);
  const int64_t prompt_tokens = j1["usage"]["prompt_tokens"];
  ASSERT_GT(prompt_tokens, 100);
  EXPECT_EQ(j2["choices"][0]["text"], j1["choices"][0]["text"]);
  const double hits_first = metric(m1.body, "troupe_prefix_cache_hits_total") - metric(m0.body, "troupe_prefix_cache_hits_total");
  const double hits_second = metric(m2.body, "troupe_prefix_cache_hits_total") - metric(m1.body, "troupe_prefix_cache_hits_total");
  EXPECT_EQ(hits_first, 0) << "the first request had nothing cached";
  // Every full 16-token block of the prompt but the one holding its last token comes from the cache.
  EXPECT_GE(hits_second, static_cast<double>((prompt_tokens - 1) / 16 * 16)) << m2.body;
  EXPECT_GT(metric(m2.body, "troupe_prefix_cache_hit_rate"), 0.0);
}

TEST_F(ServeApi, EveryMetricTheGrafanaDashboardQueriesIsServedPerModel) {
  for (const std::string model : {"stories", "tiny"})
    ASSERT_EQ(curl(*server_, "/v1/completions", R"({"model":")" + model + R"(","max_tokens":2,"prompt":"Hi"})").status, 200);
  const auto m = curl(*server_, "/metrics");
  ASSERT_EQ(m.status, 200);
  std::ifstream in("deploy/monitoring/grafana-dashboard.json");
  const auto dashboard = nlohmann::json::parse(in);
  std::set<std::string> names;
  for (const auto& panel : dashboard.at("panels"))
    for (const auto& target : panel.at("targets")) {
      const std::string expr = target.at("expr");
      for (size_t p = expr.find("troupe_"); p != std::string::npos; p = expr.find("troupe_", p + 1)) {
        size_t e = p;
        while (e < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[e])) || expr[e] == '_')) ++e;
        names.insert(expr.substr(p, e - p));
      }
    }
  ASSERT_GE(names.size(), 10u);
  // Each queried series exists with both models' labels (scheduler gauges are per model too).
  for (const auto& name : names)
    for (const std::string model : {"stories", "tiny"}) {
      const std::string prefix = name + "{model=\"" + model + "\"";
      EXPECT_NE(m.body.find("\n" + prefix), std::string::npos) << prefix << " missing from /metrics";
    }
}

TEST_F(ServeApi, ADisconnectedClientIsCancelledAndItsBlocksAreFreed) {
  const auto before = curl(*server_, "/metrics");
  ASSERT_EQ(before.status, 200);
  const double cancelled_before = metric(before.body, "troupe_requests_total{model=\"stories\",finish_reason=\"cancelled\"}");
  // Eight long streams (about 15,000 tokens in all); the client hangs up after 0.3 s.
  curl(*server_, "/v1/completions",
       R"({"model":"stories","prompt":"Once upon a time","max_tokens":1900,"temperature":1.0,"n":8,"stream":true})",
       "--max-time 0.3");
  double used = -1, cancelled = 0;
  for (int i = 0; i < 100; ++i) {
    const auto m = curl(*server_, "/metrics");
    used = metric(m.body, "troupe_kv_blocks_used");
    cancelled = metric(m.body, "troupe_requests_total{model=\"stories\",finish_reason=\"cancelled\"}");
    if (used == 0 && cancelled > cancelled_before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(used, 0) << "KV blocks still in use after the client left";
  EXPECT_GT(cancelled, cancelled_before) << "the request was not counted as cancelled";
}

}  // namespace
}  // namespace troupe::test
