#pragma once
// An asynchronous HTTP/1.1 server (Boost.Beast over Asio) for the OpenAI-compatible API.
//
// One io_context, run by a few threads; every connection lives on its own strand, so thousands
// of idle or streaming connections cost memory, not threads. The server parses a request and
// hands it to one handler together with a response_writer; the handler answers at once or later,
// from any thread: a whole response, or a server-sent-event stream (chunked transfer).
//
// Keep-alive is the default. A client that goes away (EOF, reset, a failed write) is reported
// through response_writer::on_disconnect, so the request can be cancelled. stop() drains: it
// stops accepting, closes idle connections and waits for in-flight responses to finish.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe {

/// Header name/value pairs, in order.
using http_headers = std::vector<std::pair<std::string, std::string>>;

/// A parsed request.
struct http_request {
  std::string method;   ///< "GET", "POST", ...
  std::string target;   ///< path and query, as sent ("/v1/models?x=1")
  http_headers headers;
  std::string body;
  std::string remote;   ///< peer address "ip:port"

  /// The path part of target (before '?').
  std::string_view path() const noexcept;
  /// First header of that name (case-insensitive), or "" if absent.
  std::string_view header(std::string_view name) const noexcept;
};

/// A whole response.
struct http_response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  http_headers headers;  ///< extra headers
};

/// Answers one request; every method may be called from any thread. Calls after the response
/// is complete, or after the client went away, are ignored.
class response_writer {
 public:
  virtual ~response_writer() = default;

  /// Sends a whole response (once; ignored after a stream started).
  virtual void send(http_response response) = 0;
  /// Starts a text/event-stream response with chunked transfer encoding.
  virtual void start_stream(int status = 200, http_headers headers = {}) = 0;
  /// Sends one SSE event: data is framed as "data: <data>\n\n" (one data line per line).
  virtual void send_event(std::string data) = 0;
  /// Ends the stream (the terminating chunk); the connection may serve the next request.
  virtual void close() = 0;
  /// Sets the callback run once (on a server thread) when the client disconnects before the
  /// response is complete; runs at once if that already happened. Must not block.
  virtual void on_disconnect(std::function<void()> callback) = 0;
  /// Whether the client has gone away.
  virtual bool disconnected() const noexcept = 0;
};

/// Called on a server thread for every request; must not block (hand long work elsewhere). The
/// request is the handler's to move from (a body it hands to another thread need not be copied).
using http_handler =
    std::function<void(http_request& request, std::shared_ptr<response_writer> writer)>;

/// Settings of an http_server; defaults suit a local gateway.
struct http_server_options {
  std::string host = "127.0.0.1";         ///< address to bind ("0.0.0.0" for all IPv4)
  uint16_t port = 0;                      ///< 0: an ephemeral port (see http_server::port())
  int threads = 2;                        ///< threads running the io_context
  size_t max_body_bytes = 16u << 20;      ///< larger bodies get 413
  size_t max_header_bytes = 64u << 10;    ///< larger headers get 431
  std::chrono::seconds idle_timeout{60};  ///< keep-alive wait for the next request
  std::chrono::seconds read_timeout{30};  ///< time to receive a whole request
  std::chrono::seconds write_timeout{60}; ///< a client that accepts no bytes this long is dropped
  /// Builds the response for errors the server itself answers (400, 413, 431, 500 when the
  /// handler drops its writer); default: a JSON {"error": {"message": ...}} body.
  std::function<http_response(int status, std::string message)> error_response;
};

/// The server: start() binds and runs; stop() (or the destructor) drains and joins.
class http_server {
 public:
  /// Binds host:port and starts the threads; io_error naming the address if binding fails.
  static expected<std::unique_ptr<http_server>> start(http_server_options options,
                                                      http_handler handler);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// The bound port (the ephemeral one when options.port was 0).
  uint16_t port() const noexcept;
  /// Connections currently open.
  size_t connections() const noexcept;
  /// Stops accepting, closes idle connections, waits up to drain_timeout for in-flight
  /// responses, then closes the rest (their requests see a disconnect) and joins the threads.
  /// Idempotent; call it from outside the handler (it joins the server's threads).
  void stop(std::chrono::milliseconds drain_timeout = std::chrono::seconds(30));

  struct impl;

 private:
  explicit http_server(std::shared_ptr<impl> impl);
  std::shared_ptr<impl> impl_;
};

}  // namespace troupe
