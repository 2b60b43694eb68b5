// The whole server holds 1,000 concurrent streaming requests: libcurl's multi interface opens them all
// at once from one thread against a real `troupe serve`; every one must end with [DONE] and the
// greedy reference text (most wait in the scheduler's queue while 64 run).
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/tools/server_process.hpp"
#include "tests/tools/sse.hpp"

namespace troupe::test {
namespace {

size_t append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TEST(ServeMany, AThousandConcurrentStreamsAllComplete) {
  const std::string shared_dir = TROUPE_SHARED_DIR;
  server_process server({"--model", "stories=" + shared_dir + "/models/stories260K/stories260K.gguf", "--threads", "2"});
  ASSERT_GT(server.port(), 0) << server.log();
  // The expected text: the first 8 reference ids of "Once upon a time", decoded by troupe tokenize.
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  const auto golden = nlohmann::json::parse(in);
  nlohmann::json first8 = nlohmann::json::array();
  for (const auto& c : golden.at("cases"))
    if (c.at("id") == "once_upon")
      for (int i = 0; i < 8; ++i) first8.push_back(c.at("ids")[static_cast<size_t>(i)]);
  auto decoded = run(troupe_bin() + " tokenize --model " + sh_quote(shared_dir + "/models/stories260K/stories260K.gguf") +
                     " --decode " + sh_quote(first8.dump()));
  ASSERT_EQ(decoded.exit_code, 0) << decoded.err;
  const std::string expected = decoded.out.substr(0, decoded.out.size() - 1);  // minus the newline
  ASSERT_FALSE(expected.empty());

  constexpr int clients = 1000;
  const std::string body = R"({"model":"stories","prompt":"Once upon a time","max_tokens":8,"temperature":0,"stream":true})";
  const std::string url = server.url("/v1/completions");

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(clients));
  std::vector<std::string> bodies(clients);
  std::vector<CURL*> easies;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  for (int i = 0; i < clients; ++i) {
    CURL* c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bodies[static_cast<size_t>(i)]);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);  // one connection each: all 1,000 open at once
    curl_multi_add_handle(multi, c);
    easies.push_back(c);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int running = 1;
  while (running > 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
    curl_multi_perform(multi, &running);
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  int ok = 0;
  CURLMsg* msg;
  int left = 0;
  while ((msg = curl_multi_info_read(multi, &left)))
    if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK) ++ok;
  for (CURL* c : easies) {
    curl_multi_remove_handle(multi, c);
    curl_easy_cleanup(c);
  }
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  EXPECT_EQ(ok, clients);
  int complete = 0;
  for (const auto& b : bodies) {
    const sse_result r = read_sse(b, /*chat=*/false);
    complete += r.done && r.text.substr(r.text.find_first_not_of(' ')) == expected;
  }
  EXPECT_EQ(complete, clients) << "example body: " << bodies[0].substr(0, 400);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace troupe::test
