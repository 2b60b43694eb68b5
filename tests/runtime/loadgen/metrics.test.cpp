// Metrics on scripted fake streams: SSE bytes fed at known timestamps give known TTFT, ITL, E2E and
// token counts; the summary's percentiles, std, TPOT and goodput follow vLLM's definitions.
#include "runtime/loadgen/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "runtime/loadgen/client.hpp"

namespace troupe::loadgen {
namespace {

std::string completion_chunk(const std::string& text) {
  return "data: " + nlohmann::json{{"choices", {{{"index", 0}, {"text", text}, {"finish_reason", nullptr}}}}}.dump() + "\n\n";
}

std::string usage_chunk(int prompt, int completion) {
  return "data: " + nlohmann::json{{"choices", nlohmann::json::array()}, {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion}}}}.dump() +
         "\n\n";
}

/// A completion stream of tokens arriving at the given times (seconds), started at start_s, then a
/// finish chunk, the usage and [DONE] at the last token's time.
request_record scripted(double start_s, const std::vector<double>& token_times, int prompt_tokens) {
  stream_reader r;
  for (size_t k = 0; k < token_times.size(); ++k) r.feed(completion_chunk("t" + std::to_string(k)), token_times[k]);
  r.feed("data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n" +
             usage_chunk(prompt_tokens, static_cast<int>(token_times.size())) + "data: [DONE]\n\n",
         token_times.back());
  request_record rec;
  rec.start_s = start_s;
  r.finish(rec, "", 200);
  return rec;
}

TEST(LoadgenMetrics, PercentilesInterpolateLinearlyAsNumpy) {
  const std::vector<double> v{1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 100), 4.0);
  const std::vector<double> one{5};
  EXPECT_DOUBLE_EQ(percentile_sorted(one, 99), 5.0);
  const std::vector<double> p{90, 99.9};
  const auto s = describe_seconds({0.4, 0.1, 0.3, 0.2}, p);
  EXPECT_DOUBLE_EQ(s.mean_ms, 250.0);
  EXPECT_DOUBLE_EQ(s.median_ms, 250.0);
  EXPECT_NEAR(s.std_ms, 1000.0 * std::sqrt(0.0125), 1e-9);  // population std, not sample std
  EXPECT_NEAR(s.percentiles_ms[0].second, 370.0, 1e-9);
  EXPECT_EQ(percentile_word(99.0), "99");
  EXPECT_EQ(percentile_word(99.9), "99.9");
  const auto empty = describe_seconds({}, p);
  EXPECT_EQ(empty.mean_ms, 0.0);
  EXPECT_EQ(empty.percentiles_ms[1].second, 0.0);
}

TEST(LoadgenMetrics, ScriptedStreamGivesItsTtftItlAndLatency) {
  const auto rec = scripted(1.0, {1.25, 1.30, 1.40, 1.70}, 9);
  ASSERT_TRUE(rec.success) << rec.error;
  EXPECT_NEAR(rec.ttft_s, 0.25, 1e-12);
  ASSERT_EQ(rec.itl_s.size(), 3u);
  EXPECT_NEAR(rec.itl_s[0], 0.05, 1e-12);
  EXPECT_NEAR(rec.itl_s[1], 0.10, 1e-12);
  EXPECT_NEAR(rec.itl_s[2], 0.30, 1e-12);
  EXPECT_NEAR(rec.latency_s, 0.70, 1e-12);
  EXPECT_EQ(rec.output_tokens, 4);
  EXPECT_EQ(rec.prompt_tokens, 9);
  EXPECT_TRUE(rec.usage_from_server);
  EXPECT_EQ(rec.generated_text, "t0t1t2t3");
}

TEST(LoadgenMetrics, SummaryOfScriptedRequestsHasKnownValues) {
  // TTFT 0.1, 0.2, 0.35 s; E2E 0.5, 0.2, 0.95 s; 5, 1 and 7 output tokens.
  std::vector<request_record> recs{
      scripted(0.0, {0.1, 0.2, 0.3, 0.4, 0.5}, 10),   // TPOT 0.4 / 4 = 0.1
      scripted(0.5, {0.7}, 20),                       // one token: no TPOT (0 for goodput)
      scripted(1.0, {1.35, 1.45, 1.55, 1.65, 1.75, 1.85, 1.95}, 30),  // TPOT 0.6 / 6 = 0.1
  };
  request_record failed;
  failed.error = "HTTP 500: boom";
  recs.push_back(failed);
  const std::vector<double> p{50, 90};
  slo_targets slo;
  slo.ttft_ms = 300;   // the third request misses it
  slo.tpot_ms = 100;   // the first meets it exactly: at most the target counts
  const auto s = summarize(recs, 2.0, p, slo);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 60);
  EXPECT_EQ(s.total_output_tokens, 13);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(s.output_throughput, 6.5);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 36.5);
  ASSERT_TRUE(s.request_goodput);
  EXPECT_DOUBLE_EQ(*s.request_goodput, 1.0);  // 2 good of 3, over 2 s
  EXPECT_NEAR(s.ttft.mean_ms, 650.0 / 3.0, 1e-9);
  EXPECT_NEAR(s.ttft.median_ms, 200.0, 1e-9);
  EXPECT_NEAR(s.ttft.percentiles_ms[1].second, 320.0, 1e-9);  // 200 + 0.8 * 150
  EXPECT_NEAR(s.tpot.mean_ms, 100.0, 1e-9);
  EXPECT_NEAR(s.tpot.std_ms, 0.0, 1e-9);
  EXPECT_NEAR(s.e2el.mean_ms, (500.0 + 200.0 + 950.0) / 3.0, 1e-9);
  // ITL: four gaps of 0.1 and six of 0.1: every gap 100 ms.
  EXPECT_NEAR(s.itl.mean_ms, 100.0, 1e-9);
  EXPECT_NEAR(s.itl.percentiles_ms[1].second, 100.0, 1e-9);
  // Requests in flight: [0, 0.5), [0.5, 0.7), [1.0, 1.95): never two at once (ends before starts).
  EXPECT_EQ(s.max_concurrent_requests, 1);
  // Token arrivals per one-second bucket from t=0: 6 in [0, 1), 7 in [1, 2).
  EXPECT_DOUBLE_EQ(s.max_output_tokens_per_s, 7.0);
}

TEST(LoadgenMetrics, NoSlosMeansNoGoodput) {
  const std::vector<request_record> recs{scripted(0.0, {0.1, 0.2}, 3)};
  const std::vector<double> p{99};
  EXPECT_FALSE(summarize(recs, 1.0, p, slo_targets{}).request_goodput);
}

TEST(LoadgenMetrics, ChunksSplitAnywhereAndChatRoleChunksAreNoTokens) {
  // A chat stream whose bytes arrive cut mid-line; the role chunk comes with the first token.
  const std::string role = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
  const std::string tok1 = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
  const std::string tok2 = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\r\n\r\n";
  const std::string end = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" + usage_chunk(4, 2) + "data: [DONE]\n\n";
  stream_reader r;
  const std::string first = role + tok1;
  r.feed(first.substr(0, 30), 0.10);
  r.feed(first.substr(30), 0.20);             // both chunks complete at 0.20
  r.feed(tok2.substr(0, 10), 0.25);
  r.feed(tok2.substr(10), 0.30);
  r.feed(end, 0.35);
  request_record rec;
  rec.start_s = 0.0;
  r.finish(rec, "", 200);
  ASSERT_TRUE(rec.success) << rec.error;
  EXPECT_DOUBLE_EQ(rec.ttft_s, 0.20);
  ASSERT_EQ(rec.itl_s.size(), 1u);
  EXPECT_NEAR(rec.itl_s[0], 0.10, 1e-12);
  EXPECT_DOUBLE_EQ(rec.latency_s, 0.35);  // the finish chunk ends it
  EXPECT_EQ(rec.generated_text, "Hi there");
  EXPECT_EQ(rec.output_tokens, 2);
}

TEST(LoadgenMetrics, WithoutUsageOutputTokensAreTheChunksWithText) {
  stream_reader r;
  r.feed(completion_chunk("a") + completion_chunk("b") + completion_chunk("c") + "data: [DONE]\n\n", 0.5);
  request_record rec;
  rec.prompt_tokens = 17;  // the local count stays
  r.finish(rec, "", 200);
  ASSERT_TRUE(rec.success);
  EXPECT_EQ(rec.output_tokens, 3);
  EXPECT_FALSE(rec.usage_from_server);
  EXPECT_EQ(rec.prompt_tokens, 17);
}

TEST(LoadgenMetrics, BrokenStreamsAreFailuresWithTheirError) {
  auto finish = [](const std::string& bytes, std::string_view transport, long status) {
    stream_reader r;
    r.feed(bytes, 0.1);
    request_record rec;
    r.finish(rec, transport, status);
    return rec;
  };
  auto http = finish(R"({"error":{"message":"The model `x` does not exist.","type":"NotFoundError","code":404}})", "", 404);
  EXPECT_FALSE(http.success);
  EXPECT_EQ(http.error, "HTTP 404: The model `x` does not exist.");
  auto cut = finish(completion_chunk("a"), "", 200);
  EXPECT_FALSE(cut.success);
  EXPECT_EQ(cut.error, "the stream ended before data: [DONE] (after 1 chunks)");
  auto reset = finish(completion_chunk("a"), "Recv failure: Connection reset by peer (curl error 56)", 200);
  EXPECT_EQ(reset.error, "Recv failure: Connection reset by peer (curl error 56) (after 1 chunks)");
  auto event = finish("data: {\"error\":{\"message\":\"KV cache full\"}}\n\ndata: [DONE]\n\n", "", 200);
  EXPECT_EQ(event.error, "error in the stream: KV cache full");
  auto empty = finish("data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", "", 200);
  EXPECT_FALSE(empty.success);
  EXPECT_NE(empty.error.find("no text"), std::string::npos);
}

TEST(LoadgenMetrics, GoodputTargetsParse) {
  const std::vector<std::string> words{"ttft:500", "tpot:50,e2el:2000"};
  auto slo = parse_goodput(words);
  ASSERT_TRUE(slo);
  EXPECT_EQ(slo->ttft_ms, 500.0);
  EXPECT_EQ(slo->tpot_ms, 50.0);
  EXPECT_EQ(slo->e2el_ms, 2000.0);
  for (const char* bad : {"ttft", "itl:5", "ttft:-1", "ttft:abc"}) {
    const std::vector<std::string> w{bad};
    EXPECT_FALSE(parse_goodput(w)) << bad;
  }
}

}  // namespace
}  // namespace troupe::loadgen
