#pragma once
// The gateway: speaks HTTP (the OpenAI-compatible API and server-sent events) and turns each
// generation request into a short-lived request actor that sends its sequences to the router and
// streams their token events back to the client. A client that disconnects cancels its request.
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /ready (503 until set_ready), GET /metrics (Prometheus text format).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/router_actor.hpp"
#include "runtime/api/openai.hpp"
#include "runtime/http/http_server.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// A model as the gateway serves it: the name clients use, its tokenizer and context length.
struct served_model {
  std::string name;
  std::shared_ptr<const tokenizer> tok;
  int64_t context_length = 0;
};

/// Settings of the gateway; defaults suit a local server.
struct gateway_options {
  http_server_options http;   ///< host, port (0: ephemeral), threads, body limit
  request_limits limits;      ///< OpenAI's bounds on n, stop, logprobs
  int prepare_threads = 2;    ///< threads that decode, render and tokenize requests (off the HTTP threads)
};

class gateway {
 public:
  /// Binds the HTTP server and starts answering (generation answers 503 until set_ready(true)).
  static expected<std::unique_ptr<gateway>> start(caf::actor_system& sys, router_actor router,
                                                  std::vector<served_model> models,
                                                  gateway_options opts = {});
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  /// The bound port.
  uint16_t port() const noexcept;
  /// Marks the models loaded (GET /ready answers 200, generation is accepted).
  void set_ready(bool ready) noexcept;
  /// Stops accepting new requests and waits up to drain for in-flight ones (SIGTERM).
  void stop(std::chrono::milliseconds drain = std::chrono::seconds(30));

  struct impl;

 private:
  explicit gateway(std::shared_ptr<impl> impl);
  std::shared_ptr<impl> impl_;
};

}  // namespace troupe
