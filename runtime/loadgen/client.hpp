#pragma once
// The HTTP side of a load test: streaming OpenAI requests sent from one thread with libcurl's multi
// interface at the times an arrival schedule gives, each chunk timestamped on a steady clock as it
// arrives, and every way a request can fail (refused, reset, cut short, timed out, HTTP error, an
// error event in the stream) recorded as that request's error.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/loadgen/metrics.hpp"
#include "runtime/loadgen/workload.hpp"

namespace troupe::loadgen {

enum class api_kind { completions, chat };

/// What goes into every request body besides the prompt.
struct body_options {
  std::string model;
  api_kind api = api_kind::completions;
  std::optional<double> temperature;  ///< sent only when given (else the server's default)
  bool ignore_eos = false;            ///< sent only when true (vLLM's extension; not all servers honour it)
};

/// The streaming request body of workload item i (stream_options.include_usage on): a completion of
/// its prompt, or a chat whose messages are the earlier turns of its conversation with the replies
/// recorded for them, then its own prompt.
std::string request_body(const body_options& o, std::span<const workload_item> items, size_t i,
                         std::span<const request_record> records);

/// Reads one streamed response as it arrives: splits server-sent events into lines, timestamps the
/// `data:` chunks whose first choice carries text (role-only and finish-only chunks are not tokens),
/// and keeps the text, the usage and any error event.
class stream_reader {
 public:
  /// Bytes received at now_s (seconds on the clock of request_record::start_s).
  void feed(std::string_view bytes, double now_s);
  /// Whether `data: [DONE]` has arrived.
  bool done() const noexcept { return done_; }
  /// Fills rec (whose start_s is set) from the stream: transport_error is "" when the transfer
  /// ended cleanly, http_status the response's status (0: none arrived).
  void finish(request_record& rec, std::string_view transport_error, long http_status) const;

 private:
  void on_line(std::string_view line, double now_s);

  std::string partial_;               ///< a line still missing its end
  std::string head_;                  ///< the first bytes of the body, for error responses
  std::vector<double> token_times_;   ///< arrival of each chunk with text
  double last_choice_s_ = 0.0;        ///< arrival of the last chunk with choices
  bool done_ = false;
  int64_t chunks_ = 0;
  std::optional<int64_t> prompt_tokens_, completion_tokens_;
  std::string text_;
  std::string error_;                 ///< an error event, or a data line that is not JSON
};

/// Where and how to send.
struct client_options {
  std::string url;              ///< the endpoint, e.g. http://127.0.0.1:8000/v1/completions
  double timeout_s = 600.0;     ///< per request, from its send to the end of its stream
  int max_concurrency = 0;      ///< requests in flight at most; 0: no cap
};

/// One request of the plan.
struct planned_request {
  double send_at_s = 0.0;       ///< release time from the start of the run (non-decreasing in plan order)
  int64_t after = -1;           ///< a request whose reply must arrive first (-1: none)
  int64_t prompt_tokens = 0;    ///< the local count, kept when the server sends no usage
  int64_t conversation = -1;
  int32_t turn = 0;
};

/// The body of request i, built when it is sent (so that it can hold earlier replies).
using body_builder = std::function<std::string(size_t i, std::span<const request_record> records)>;

/// How far a run is, for a progress display.
struct run_progress {
  size_t total = 0, completed = 0, failed = 0, in_flight = 0;
  double elapsed_s = 0.0;
};
using progress_fn = std::function<void(const run_progress&)>;

struct run_outcome {
  std::vector<request_record> records;  ///< one per planned request, in plan order
  double duration_s = 0.0;              ///< from the start of the run to the last reply
};

/// Sends the plan and waits for every reply or failure. A request is sent once its time has come,
/// the request it waits for has finished and fewer than max_concurrency are in flight (the oldest
/// released first); one whose predecessor failed fails unsent. Sends follow the precomputed times,
/// whatever the responses do, unless the cap holds them back.
run_outcome run_requests(const client_options& opts, std::span<const planned_request> plan, const body_builder& body,
                         const progress_fn& progress = {});

/// The model ids a server lists at BASE/v1/models, in its order.
expected<std::vector<std::string>> fetch_model_ids(const std::string& base_url, double timeout_s);

}  // namespace troupe::loadgen
