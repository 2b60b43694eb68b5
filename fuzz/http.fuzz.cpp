// The HTTP request path: the real server (runtime/http/http_server.cpp) started once on loopback,
// every input written to a fresh connection as the raw bytes a client sends, then read until the server
// closes. The handler routes like the gateway (actors/gateway.cpp) without a model: the OpenAI bodies go
// through the request decoder, streams through the SSE writer. The server's limits are set low (8 KiB
// headers, 64 KiB bodies, as the gateway's settings but smaller) so that inputs reach them.
//
// A server that neither answers nor closes within 20 s counts as a hang (abort).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "fuzz/fuzz_support.hpp"
#include "runtime/api/openai.hpp"
#include "runtime/http/http_server.hpp"

using namespace troupe;

namespace {

http_response json(int status, std::string body) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void handle(const http_request& req, std::shared_ptr<response_writer> w) {
  const std::string_view path = req.path();
  (void)req.header("content-type");
  const bool chat = path == "/v1/chat/completions";
  if (req.method == "POST" && (chat || path == "/v1/completions")) {
    auto parsed = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
    if (!parsed) return w->send(json(parsed.error().status, parsed.error().body()));
    if (parsed->stream) {
      w->start_stream(200);
      w->send_event(R"({"choices":[{"index":0,"text":"a\nb"}]})");
      w->send_event("[DONE]");
      return w->close();
    }
    return w->send(json(200, R"({"ok":true})"));
  }
  if (req.method == "GET" && path == "/health") return w->send(json(200, R"({"status":"ok"})"));
  w->send(json(404, R"({"error":{"message":"no such endpoint"}})"));
}

uint16_t server_port() {
  // Never stopped: it serves until the process exits (a reachable global, so no leak report).
  static http_server* const server = [] {
    http_server_options o;
    o.threads = 1;
    o.max_body_bytes = 64 << 10;
    o.max_header_bytes = 8 << 10;
    o.read_timeout = std::chrono::seconds(5);
    auto s = http_server::start(o, handle);
    if (!s) std::abort();
    return s->release();
  }();
  return server->port();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) std::abort();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Every call is retried on EINTR: libFuzzer's -timeout watchdog is a SIGALRM that lands on any thread.
  int r;
  do r = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  while (r != 0 && errno == EINTR);
  if (r != 0) std::abort();
  // The server may answer (413, 431, 400) and close before it has read everything: stop writing then.
  for (size_t sent = 0; sent < size;) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[16384];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) std::abort();  // hung: no answer, no close
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) std::abort();
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  ::close(fd);
  return 0;
}
