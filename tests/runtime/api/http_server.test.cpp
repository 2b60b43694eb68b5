// Real-HTTP tests of runtime/http/http_server on 127.0.0.1 with an ephemeral port, using libcurl
// as the client.

#include <gtest/gtest.h>

#include <curl/curl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/api/openai.hpp"
#include "runtime/http/http_server.hpp"
#include "tests/tools/hostile_peer.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

struct curl_env {
  curl_env() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~curl_env() { curl_global_cleanup(); }
};
const curl_env& global_curl() {
  static curl_env env;
  return env;
}

struct reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::string headers;
  int writes = 0;  // how many times curl delivered body bytes
};

struct transfer {
  reply r;
  std::function<bool(const reply&)> on_data;  // false: abort the transfer
};

size_t on_body(char* p, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  t->r.body.append(p, size * n);
  ++t->r.writes;
  if (t->on_data && !t->on_data(t->r)) return 0;  // makes curl abort and close the connection
  return size * n;
}

size_t on_header(char* p, size_t size, size_t n, void* user) {
  static_cast<transfer*>(user)->r.headers.append(p, size * n);
  return size * n;
}

// Prepares an easy handle for url; post_body set: a POST of that body.
CURL* make_easy(const std::string& url, transfer& t, const std::string* post_body,
                curl_slist* headers = nullptr, long timeout_s = 20) {
  (void)global_curl();
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (post_body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post_body->size()));
  }
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  return c;
}

reply fetch(const std::string& url, const std::string* post_body = nullptr,
            std::function<bool(const reply&)> on_data = {}, curl_slist* headers = nullptr) {
  transfer t;
  t.on_data = std::move(on_data);
  CURL* c = make_easy(url, t, post_body, headers);
  t.r.code = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.r.status);
  curl_easy_cleanup(c);
  return t.r;
}

http_response api_error_response(int status, std::string message) {
  api_error e = status == 413 ? body_too_large(1024) : api_error{status, std::move(message), "invalid_request_error", "", ""};
  return {status, e.body(), "application/json", {}};
}

std::unique_ptr<http_server> start_server(http_handler handler, http_server_options opts = {}) {
  opts.host = "127.0.0.1";
  opts.port = 0;
  if (!opts.error_response) opts.error_response = api_error_response;
  auto s = http_server::start(std::move(opts), std::move(handler));
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().what());
  if (!s) return nullptr;
  EXPECT_NE((*s)->port(), 0);
  return std::move(*s);
}

std::string url(const http_server& s, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + path;
}

TEST(HttpServer, PlainJsonResponseAndKeepAlive) {
  auto server = start_server([](const http_request& req, std::shared_ptr<response_writer> w) {
    if (req.method == "GET" && req.path() == "/v1/models") {
      std::vector<model_card> models = {{"tiny", 1, "troupe", 0}};
      w->send({200, build_models_list(models), "application/json", {{"X-Test", "1"}}});
    } else if (req.method == "POST" && req.path() == "/echo") {
      w->send({200, std::string(req.header("content-type")) + "|" + req.body, "text/plain", {}});
    } else {
      w->send({404, model_not_found("x").body(), "application/json", {}});
    }
  });
  ASSERT_TRUE(server);
  reply r = fetch(url(*server, "/v1/models?x=1"));
  ASSERT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["data"][0]["id"], "tiny");
  EXPECT_NE(r.headers.find("Content-Type: application/json"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("X-Test: 1"), std::string::npos);

  const std::string body = R"({"a":1})";
  curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
  r = fetch(url(*server, "/echo"), &body, {}, h);
  curl_slist_free_all(h);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "application/json|" + body);

  r = fetch(url(*server, "/nope"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "model_not_found");

  // Two requests on one handle: the second reuses the connection.
  transfer t;
  CURL* c = make_easy(url(*server, "/v1/models"), t, nullptr);
  ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
  t.r.body.clear();
  ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
  long new_connections = -1;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &new_connections);
  curl_easy_cleanup(c);
  EXPECT_EQ(new_connections, 0);
  EXPECT_EQ(json::parse(t.r.body)["object"], "list");
}

TEST(HttpServer, SseStreamArrivesIncrementally) {
  // The server sends event i+1 only after the client has received event i, so a server that
  // buffered the stream would never finish.
  std::mutex mu;
  std::condition_variable cv;
  int received = 0;
  std::thread producer;
  auto server = start_server([&](const http_request&, std::shared_ptr<response_writer> w) {
    w->start_stream();
    producer = std::thread([&, w] {
      for (int i = 0; i < 5; ++i) {
        w->send_event("{\"i\":" + std::to_string(i) + "}");
        std::unique_lock lock(mu);
        if (!cv.wait_for(lock, 5s, [&] { return received > i; })) break;
      }
      w->send_event(std::string(sse_done));
      w->close();
    });
  });
  ASSERT_TRUE(server);
  reply r = fetch(url(*server, "/v1/chat/completions"), nullptr, [&](const reply& sofar) {
    size_t events = 0;
    for (size_t p = sofar.body.find("data: "); p != std::string::npos; p = sofar.body.find("data: ", p + 1)) ++events;
    std::lock_guard lock(mu);
    received = static_cast<int>(events);
    cv.notify_all();
    return true;
  });
  producer.join();
  ASSERT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: {\"i\":2}\n\ndata: {\"i\":3}\n\n"
                    "data: {\"i\":4}\n\ndata: [DONE]\n\n");
  EXPECT_GE(r.writes, 5);
  EXPECT_NE(r.headers.find("Content-Type: text/event-stream"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("Transfer-Encoding: chunked"), std::string::npos) << r.headers;
}

TEST(HttpServer, HugeBodyGets413) {
  http_server_options opts;
  opts.max_body_bytes = 1024;
  std::atomic<int> handled{0};
  auto server = start_server([&](const http_request&, std::shared_ptr<response_writer> w) {
    ++handled;
    w->send({200, "{}", "application/json", {}});
  }, opts);
  ASSERT_TRUE(server);
  const std::string huge(4 << 20, 'x');
  // With curl's default "Expect: 100-continue" the server answers before the body is sent.
  reply r = fetch(url(*server, "/v1/completions"), &huge);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "request_too_large");
  // Without Expect the body is on its way; the server still answers 413 and then closes.
  curl_slist* h = curl_slist_append(nullptr, "Expect:");
  r = fetch(url(*server, "/v1/completions"), &huge, {}, h);
  curl_slist_free_all(h);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(handled.load(), 0);
  // A body under the limit passes.
  const std::string small(1000, 'y');
  r = fetch(url(*server, "/v1/completions"), &small);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(handled.load(), 1);
}

TEST(HttpServer, ClientDisconnectMidStreamRunsCallback) {
  std::promise<void> disconnected;
  std::atomic<bool> stop_producing{false};
  std::shared_ptr<response_writer> writer;
  std::thread producer;
  auto server = start_server([&](const http_request& req, std::shared_ptr<response_writer> w) {
    if (req.path() == "/ok") return w->send({200, "{}", "application/json", {}});
    writer = w;
    w->on_disconnect([&] { disconnected.set_value(); });
    w->start_stream();
    producer = std::thread([&, w] {
      for (int i = 0; i < 1000 && !stop_producing && !w->disconnected(); ++i) {
        w->send_event("tick");
        std::this_thread::sleep_for(10ms);
      }
    });
  });
  ASSERT_TRUE(server);
  reply r = fetch(url(*server, "/stream"), nullptr, [](const reply&) { return false; });
  EXPECT_EQ(r.code, CURLE_WRITE_ERROR);  // the client hung up after the first event
  auto fut = disconnected.get_future();
  EXPECT_EQ(fut.wait_for(5s), std::future_status::ready);
  stop_producing = true;
  producer.join();
  EXPECT_TRUE(writer->disconnected());
  // Calls after the disconnect are ignored, and the server carries on.
  writer->send_event("late");
  writer->close();
  writer.reset();
  EXPECT_EQ(fetch(url(*server, "/ok")).status, 200);
}

TEST(HttpServer, NoDisconnectCallbackAfterACompleteResponse) {
  std::atomic<int> calls{0};
  auto server = start_server([&](const http_request&, std::shared_ptr<response_writer> w) {
    w->on_disconnect([&] { ++calls; });
    w->send({200, "{}", "application/json", {}});
  });
  ASSERT_TRUE(server);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(fetch(url(*server, "/")).status, 200);
  server->stop(2s);
  EXPECT_EQ(calls.load(), 0);
}

TEST(HttpServer, DroppedWriterAndThrowingHandlerGive500) {
  auto server = start_server([](const http_request& req, std::shared_ptr<response_writer> w) {
    if (req.path() == "/throw") throw std::runtime_error("handler bug");
    // "/drop": the writer goes out of scope unanswered.
  });
  ASSERT_TRUE(server);
  reply r = fetch(url(*server, "/drop"));
  EXPECT_EQ(r.status, 500);
  r = fetch(url(*server, "/throw"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(fetch(url(*server, "/drop")).status, 500);  // still serving
}

TEST(HttpServer, UnclosedStreamIsEndedWhenTheWriterIsDropped) {
  auto server = start_server([](const http_request&, std::shared_ptr<response_writer> w) {
    w->start_stream();
    w->send_event("only");
  });
  ASSERT_TRUE(server);
  reply r = fetch(url(*server, "/"));
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.body, "data: only\n\n");
}

TEST(HttpServer, MalformedRequestGets400) {
  // curl cannot send a broken request line; a raw request through CURLOPT_CUSTOMREQUEST with a
  // space in the method does.
  auto server = start_server([](const http_request&, std::shared_ptr<response_writer> w) {
    w->send({200, "{}", "application/json", {}});
  });
  ASSERT_TRUE(server);
  transfer t;
  CURL* c = make_easy(url(*server, "/"), t, nullptr);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "BAD METHOD");
  curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.r.status);
  curl_easy_cleanup(c);
  EXPECT_EQ(t.r.status, 400);
}

// Sends raw bytes to 127.0.0.1:port and returns what the server answers before it closes (or 5 s).
std::string raw_exchange(uint16_t port, const std::string& bytes) {
  const int fd = test::connect_loopback(port);
  if (fd < 0) return {};
  (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got;
}

// Regression (issue 11): a chunked body with a bad chunk size closed the connection without an answer.
TEST(HttpServer, BadChunkSizeGets400) {
  std::atomic<int> handled{0};
  auto server = start_server([&](const http_request&, std::shared_ptr<response_writer> w) {
    ++handled;
    w->send({200, "{}", "application/json", {}});
  });
  ASSERT_TRUE(server);
  for (const std::string chunk : {"ZZ\r\nabc\r\n0\r\n\r\n", "-5\r\nabc\r\n0\r\n\r\n",
                                  "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n", "3\r\nabcXX0\r\n\r\n"}) {
    const std::string reply = raw_exchange(server->port(),
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk);
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << chunk << " -> " << reply;
    EXPECT_NE(reply.find("malformed"), std::string::npos) << reply;
  }
  EXPECT_EQ(handled.load(), 0);
  // The server still answers a good chunked request.
  const std::string ok = raw_exchange(server->port(),
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200", 0), 0u) << ok;
}

TEST(HttpServer, StopDrainsInFlightStreams) {
  std::promise<std::shared_ptr<response_writer>> got;
  auto server = start_server([&](const http_request& req, std::shared_ptr<response_writer> w) {
    if (req.path() == "/idle") return w->send({200, "{}", "application/json", {}});
    w->start_stream();
    w->send_event("first");
    got.set_value(w);
  });
  ASSERT_TRUE(server);
  // An idle keep-alive connection must not hold up the drain.
  transfer idle_t;
  CURL* idle = make_easy(url(*server, "/idle"), idle_t, nullptr);
  ASSERT_EQ(curl_easy_perform(idle), CURLE_OK);
  auto client = std::async(std::launch::async, [&] { return fetch(url(*server, "/")); });
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto w = fut.get();
  auto stopping = std::async(std::launch::async, [&] { server->stop(10s); });
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(stopping.wait_for(0s), std::future_status::timeout);  // waits for the stream
  w->send_event("second");
  w->send_event(std::string(sse_done));
  w->close();
  w.reset();
  const auto t0 = std::chrono::steady_clock::now();
  stopping.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  reply r = client.get();
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.body, "data: first\n\ndata: second\n\ndata: [DONE]\n\n");
  EXPECT_EQ(server->connections(), 0u);
  // After stop, nothing listens.
  EXPECT_NE(curl_easy_perform(idle), CURLE_OK);
  curl_easy_cleanup(idle);
}

TEST(HttpServer, StopWithOnlyIdleConnectionsIsQuick) {
  auto server = start_server([](const http_request&, std::shared_ptr<response_writer> w) {
    w->send({200, "{}", "application/json", {}});
  });
  ASSERT_TRUE(server);
  transfer t;
  CURL* c = make_easy(url(*server, "/"), t, nullptr);
  ASSERT_EQ(curl_easy_perform(c), CURLE_OK);  // leaves a keep-alive connection open
  const auto t0 = std::chrono::steady_clock::now();
  server->stop(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  curl_easy_cleanup(c);
}

TEST(HttpServer, BindFailureIsAnError) {
  auto first = start_server([](const http_request&, std::shared_ptr<response_writer>) {});
  ASSERT_TRUE(first);
  http_server_options opts;
  opts.port = first->port();
  opts.host = "127.0.0.1";
  auto second = http_server::start(opts, [](const http_request&, std::shared_ptr<response_writer>) {});
  // SO_REUSEADDR does not allow two listeners on one port on Linux.
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), errc::io_error);
  opts.host = "not an address";
  EXPECT_FALSE(http_server::start(opts, [](const http_request&, std::shared_ptr<response_writer>) {}).has_value());
}

TEST(HttpServer, ThousandConcurrentStreamsComplete) {
  constexpr int kClients = 1000;
  // Two descriptors per connection (client and server side) plus slack.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < 2 * kClients + 200) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 2 * kClients + 200);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < 2 * kClients + 200) GTEST_SKIP() << "descriptor limit too low: " << lim.rlim_cur;

  // Every request parks its writer; once all are open at the same time, a producer thread
  // streams three events and [DONE] to each.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<response_writer>> writers;
  http_server_options opts;
  opts.threads = 2;
  auto server = start_server([&](const http_request&, std::shared_ptr<response_writer> w) {
    w->start_stream();
    std::lock_guard lock(mu);
    writers.push_back(std::move(w));
    cv.notify_all();
  }, opts);
  ASSERT_TRUE(server);

  std::atomic<size_t> peak{0};
  std::thread producer([&] {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 60s, [&] { return writers.size() == kClients; })) return;
    peak = server->connections();
    auto all = std::move(writers);
    lock.unlock();
    for (int e = 0; e < 3; ++e)
      for (auto& w : all) w->send_event("{\"event\":" + std::to_string(e) + "}");
    for (auto& w : all) {
      w->send_event(std::string(sse_done));
      w->close();
    }
  });

  (void)global_curl();
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(kClients));
  std::vector<transfer> transfers(kClients);
  std::vector<CURL*> easies;
  const std::string u = url(*server, "/v1/chat/completions");
  for (int i = 0; i < kClients; ++i) {
    CURL* c = make_easy(u, transfers[i], nullptr, nullptr, /*timeout_s=*/90);
    curl_multi_add_handle(multi, c);
    easies.push_back(c);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int running = 1;
  while (running > 0 && std::chrono::steady_clock::now() - t0 < 90s) {
    curl_multi_perform(multi, &running);
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  int done_ok = 0;
  CURLMsg* msg;
  int left = 0;
  while ((msg = curl_multi_info_read(multi, &left))) {
    if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK) ++done_ok;
  }
  for (CURL* c : easies) {
    curl_multi_remove_handle(multi, c);
    curl_easy_cleanup(c);
  }
  curl_multi_cleanup(multi);
  producer.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;

  EXPECT_EQ(done_ok, kClients);
  EXPECT_EQ(peak.load(), static_cast<size_t>(kClients));  // all were open at once
  const std::string expected = "data: {\"event\":0}\n\ndata: {\"event\":1}\n\ndata: {\"event\":2}\n\ndata: [DONE]\n\n";
  int complete = 0;
  for (const auto& t : transfers) complete += t.r.body == expected;
  EXPECT_EQ(complete, kClients);
  EXPECT_LT(elapsed, 60s);
  std::cout << "1000 concurrent streams: " << std::chrono::duration<double>(elapsed).count() << " s\n";
}

}  // namespace
}  // namespace troupe
