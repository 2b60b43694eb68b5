// The streaming client against scripted servers on loopback: chunks are timed as they arrive,
// open-loop sends keep their schedule while responses are slow, a cap holds requests back, turns
// wait for the previous reply, and dropped, cut or silent connections end as failures with their
// error in bounded time.
#include "runtime/loadgen/client.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/runtime/loadgen/fake_server.hpp"

namespace troupe::loadgen {
namespace {

using test::fake_server;
using namespace std::chrono_literals;

std::string chunk(const std::string& text) {
  return "data: " + nlohmann::json{{"choices", {{{"index", 0}, {"text", text}, {"finish_reason", nullptr}}}}}.dump() + "\n\n";
}

/// A good completion stream: first token after first_delay, then one every gap.
void write_stream(int fd, int tokens, std::chrono::milliseconds first_delay, std::chrono::milliseconds gap) {
  fake_server::send_all(fd, fake_server::stream_head());
  std::this_thread::sleep_for(first_delay);
  for (int k = 0; k < tokens; ++k) {
    if (k > 0) std::this_thread::sleep_for(gap);
    fake_server::send_all(fd, chunk("w" + std::to_string(k)));
  }
  fake_server::send_all(fd, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":" + std::to_string(tokens) +
                                "}}\n\ndata: [DONE]\n\n");
}

std::string simple_body(size_t, std::span<const request_record>) {
  return R"({"model":"m","prompt":"p","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}})";
}

std::vector<planned_request> at_once(size_t n) { return std::vector<planned_request>(n); }

TEST(LoadgenClient, ChunksAreTimedAsTheyArrive) {
  std::mutex mu;
  std::vector<std::string> requests;
  fake_server server([&](int fd, const std::string& req) {
    {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back(req);
    }
    write_stream(fd, 4, 80ms, 40ms);
  });
  client_options o;
  o.url = server.url() + "/v1/completions";
  const auto plan = at_once(3);
  const auto out = run_requests(o, plan, simple_body);
  ASSERT_EQ(out.records.size(), 3u);
  for (const auto& r : out.records) {
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_GE(r.ttft_s, 0.080);
    EXPECT_LT(r.ttft_s, 2.0);
    ASSERT_EQ(r.itl_s.size(), 3u);
    for (double gap : r.itl_s) {
      EXPECT_GE(gap, 0.035);
      EXPECT_LT(gap, 2.0);
    }
    // Three 40 ms gaps after the first chunk, each allowed the same 5 ms of delivery jitter as above
    // (a first chunk read a little late shortens the span: it failed at 119.6 ms under load).
    EXPECT_GE(r.latency_s, r.ttft_s + 3 * 0.035);
    EXPECT_EQ(r.output_tokens, 4);
    EXPECT_EQ(r.prompt_tokens, 5);
    EXPECT_EQ(r.generated_text, "w0w1w2w3");
  }
  EXPECT_GE(out.duration_s, 0.2);
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_NE(requests[0].find("POST /v1/completions"), std::string::npos);
  EXPECT_NE(requests[0].find("\"include_usage\":true"), std::string::npos);  // the body arrived whole
}

TEST(LoadgenClient, DroppedCutAndSilentConnectionsFailWithTheirError) {
  enum class mode { close_at_once, half_stream, silent };
  for (mode m : {mode::close_at_once, mode::half_stream, mode::silent}) {
    fake_server server([&](int fd, const std::string&) {
      if (m == mode::half_stream) {
        fake_server::send_all(fd, fake_server::stream_head() + chunk("a") + chunk("b"));
      } else if (m == mode::silent) {
        server.hold(fd);
      }
    });
    client_options o;
    o.url = server.url() + "/v1/completions";
    o.timeout_s = 0.5;
    const auto t0 = std::chrono::steady_clock::now();
    const auto plan = at_once(4);
    const auto out = run_requests(o, plan, simple_body);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
    for (const auto& r : out.records) {
      EXPECT_FALSE(r.success);
      switch (m) {
        case mode::close_at_once: EXPECT_NE(r.error.find("Empty reply from server"), std::string::npos) << r.error; break;
        case mode::half_stream: EXPECT_EQ(r.error, "the stream ended before data: [DONE] (after 2 chunks)"); break;
        case mode::silent: EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error; break;
      }
    }
  }
  // Nothing listening at all.
  int port = 0;
  {
    fake_server gone([](int, const std::string&) {});
    port = gone.port();
  }
  client_options o;
  o.url = "http://127.0.0.1:" + std::to_string(port) + "/v1/completions";
  const auto plan = at_once(1);
  const auto out = run_requests(o, plan, simple_body);
  EXPECT_FALSE(out.records[0].success);
  EXPECT_NE(out.records[0].error.find("curl error 7"), std::string::npos) << out.records[0].error;
}

TEST(LoadgenClient, OpenLoopSendsKeepTheirScheduleWhileResponsesAreSlow) {
  fake_server server([](int fd, const std::string&) { write_stream(fd, 2, 800ms, 10ms); });
  client_options o;
  o.url = server.url() + "/v1/completions";
  std::vector<planned_request> plan(10);
  for (size_t i = 0; i < plan.size(); ++i) plan[i].send_at_s = 0.05 * static_cast<double>(i + 1);
  const auto out = run_requests(o, plan, simple_body);
  for (const auto& r : out.records) {
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_NEAR(r.start_s, r.scheduled_s, 0.1) << "request " << r.index;  // not held back by the 0.8 s replies
  }
  EXPECT_LT(out.duration_s, 2.5);  // overlapped, not 10 x 0.8 s
}

TEST(LoadgenClient, ConcurrencyCapHoldsRequestsBack) {
  fake_server server([](int fd, const std::string&) { write_stream(fd, 2, 150ms, 10ms); });
  client_options o;
  o.url = server.url() + "/v1/completions";
  o.max_concurrency = 2;
  const auto plan = at_once(6);
  const auto out = run_requests(o, plan, simple_body);
  for (const auto& r : out.records) ASSERT_TRUE(r.success) << r.error;
  const std::vector<double> p{99};
  EXPECT_EQ(summarize(out.records, out.duration_s, p, {}).max_concurrent_requests, 2);
  // Closed loop: the third and fourth go when the first two are answered.
  EXPECT_GE(out.records[2].start_s, 0.15);
  EXPECT_GE(out.records[4].start_s, 0.30);
  EXPECT_GE(out.duration_s, 0.45);
}

TEST(LoadgenClient, ATurnWaitsForThePreviousReplyAndFailsUnsentAfterAFailure) {
  std::atomic<int> served{0};
  fake_server server([&](int fd, const std::string& req) {
    // The conversation "bad" is cut off; others answer after 100 ms.
    if (req.find("bad") != std::string::npos) return;
    ++served;
    write_stream(fd, 2, 100ms, 10ms);
  });
  client_options o;
  o.url = server.url() + "/v1/completions";
  std::vector<planned_request> plan(4);
  plan[2].after = 0;  // good: 0 then 2
  plan[3].after = 1;  // bad: 1 then 3
  const auto out = run_requests(o, plan, [](size_t i, std::span<const request_record>) {
    return std::string(i % 2 == 1 ? R"({"prompt":"bad"})" : R"({"prompt":"good"})");
  });
  ASSERT_TRUE(out.records[0].success) << out.records[0].error;
  ASSERT_TRUE(out.records[2].success) << out.records[2].error;
  EXPECT_GE(out.records[2].start_s, out.records[0].start_s + out.records[0].latency_s);
  EXPECT_FALSE(out.records[1].success);
  EXPECT_FALSE(out.records[3].success);
  EXPECT_EQ(out.records[3].error, "not sent: request 1, the turn before it, failed");
  EXPECT_EQ(served.load(), 2);
}

}  // namespace
}  // namespace troupe::loadgen
