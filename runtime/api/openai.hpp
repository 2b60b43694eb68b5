#pragma once
// The OpenAI-compatible request/response codec: pure functions from HTTP bodies to a
// generation_request, and from generation results to response bodies and SSE chunk payloads.
// No I/O here; the HTTP server (runtime/http) and the gateway actor do that.
//
// Field names, ranges and error shapes follow the OpenAI API reference (and vLLM's extensions:
// top_k, min_p, repetition_penalty, stop_token_ids, ignore_eos). Unknown fields are ignored, as OpenAI does.
//
// Status for a prompt longer than the context: 400 with code "context_length_exceeded", as OpenAI
// and vLLM return it (not 422), so that clients that match on OpenAI's behaviour keep working.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/tokenizer/chat_template.hpp"

namespace troupe {

// ---------------------------------------------------------------------------------------------
// Errors

/// An error to send back: HTTP status plus OpenAI's {"error": {message, type, param, code}}.
struct api_error {
  int status = 500;
  std::string message;
  std::string type = "server_error";  ///< "invalid_request_error", "server_error", ...
  std::string param;                  ///< the offending field; "" is written as null
  std::string code;                   ///< machine-readable code; "" is written as null

  /// The JSON body: {"error": {...}}.
  std::string body() const;
};

/// 400: a field has a bad value or type; names the field in message and param.
api_error invalid_request(std::string message, std::string param = {},
                          std::string code = "invalid_value");
/// 400: the body is not JSON, or not a JSON object.
api_error malformed_json(std::string_view detail);
/// 404 model_not_found.
api_error model_not_found(std::string_view model);
/// 413: the body is larger than the server accepts.
api_error body_too_large(size_t limit_bytes);
/// 400 context_length_exceeded: prompt (+ requested completion) does not fit the context;
/// param is "messages" (chat) or "prompt" (completions).
api_error context_length_exceeded(int64_t prompt_tokens, int64_t max_tokens,
                                  int64_t context_length, std::string param = "messages");
/// 400 context_length_exceeded before tokenizing: a prompt of prompt_bytes bytes is at least
/// min_prompt_tokens tokens, more than the context holds.
api_error prompt_exceeds_context(int64_t min_prompt_tokens, size_t prompt_bytes, int64_t context_length,
                                 std::string param = "messages");
/// 503: the model or server is not ready (loading, draining, overloaded).
api_error not_ready(std::string message);
/// 500: a bug or an unexpected failure; the message should not leak internals.
api_error internal_error(std::string message);
/// Maps a troupe::error met while serving to the status a client should see.
api_error to_api_error(const error& err);

/// Either a T or the api_error to return (the shape of troupe::expected, with an api_error).
template <class T>
class [[nodiscard]] api_result {
 public:
  api_result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  api_result(api_error err) : v_(std::in_place_index<1>, std::move(err)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const api_error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, api_error> v_;
};

// ---------------------------------------------------------------------------------------------
// Requests

/// Which endpoint a request came in on; decides the response object shapes.
enum class api_endpoint { chat_completions, completions };

/// One prompt of /v1/completions: text, or token ids given directly.
struct prompt_input {
  std::string text;
  std::vector<int32_t> token_ids;
  bool is_tokens = false;  ///< token_ids holds the prompt (text is empty)
};

/// A validated generation request, endpoint-independent.
struct generation_request {
  api_endpoint endpoint = api_endpoint::chat_completions;
  std::string model;
  std::vector<chat_message> messages;  ///< chat: the conversation (content parts joined)
  std::vector<prompt_input> prompts;   ///< completions: one entry per prompt (>= 1)
  std::optional<int32_t> max_tokens;   ///< unset: up to the context length
  sampling_params sampling;            ///< validated; sampling.logprobs = top-k count wanted
  std::vector<std::string> stop;       ///< stop strings (not included in the output)
  int32_t n = 1;                       ///< choices per prompt
  bool logprobs = false;               ///< return the chosen tokens' log-probabilities
  bool stream = false;
  bool include_usage = false;          ///< stream_options.include_usage
  bool ignore_eos = false;             ///< vLLM's extension: do not stop at EOS (max_tokens still does)
  std::string user;
  std::string cache_salt;              ///< vLLM's extension: salts the prefix cache ("" : none)

  /// Choices in the response: prompts x n for completions, n for chat.
  int32_t choice_count() const noexcept;
};

/// Bounds the parser enforces beyond OpenAI's per-field ranges.
struct request_limits {
  int32_t max_n = 128;                   ///< OpenAI's bound on n
  int32_t max_stop = 4;                  ///< OpenAI: up to 4 stop sequences
  int32_t max_top_logprobs = 20;         ///< chat top_logprobs bound (OpenAI: 20)
  int32_t max_completion_logprobs = 5;   ///< completions logprobs bound (OpenAI: 5)
  int32_t max_choices = 256;             ///< prompts x n, to bound one request's fan-out
};

/// Parses and validates a POST /v1/chat/completions body.
api_result<generation_request> parse_chat_request(std::string_view body,
                                                  const request_limits& limits = {});
/// Parses and validates a POST /v1/completions body.
api_result<generation_request> parse_completion_request(std::string_view body,
                                                        const request_limits& limits = {});

/// Checks prompt + max_tokens against the context; returns the completion budget to use
/// (max_tokens, or what is left of the context when unset), or 400 context_length_exceeded.
api_result<int32_t> fit_context(int64_t prompt_tokens, std::optional<int32_t> max_tokens,
                                int64_t context_length, std::string param = "messages");

// ---------------------------------------------------------------------------------------------
// Responses

/// Why a choice ended, in OpenAI's words.
enum class finish_reason { stop, length };
/// "stop" or "length".
std::string_view to_string(finish_reason reason);

/// One candidate token and its log-probability.
struct logprob_candidate {
  std::string token;  ///< the token's text (raw bytes; may be a partial UTF-8 sequence)
  float logprob = 0.0f;
};

/// Log-probability information for one generated token.
struct token_logprobs {
  std::string token;
  float logprob = 0.0f;
  std::vector<logprob_candidate> top;  ///< most likely first
};

/// Token counts of a request.
struct usage_info {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

/// The identity every object of one response carries.
struct response_meta {
  std::string id;        ///< "chatcmpl-..." or "cmpl-..."
  std::string model;
  int64_t created = 0;   ///< unix seconds
};

/// A finished choice of a non-streaming response.
struct choice_result {
  int32_t index = 0;
  std::string text;
  finish_reason finish = finish_reason::stop;
  std::optional<std::vector<token_logprobs>> logprobs;  ///< set when the request asked
};

/// A fresh response id: prefix + 24 random alphanumerics.
std::string make_response_id(std::string_view prefix);

/// The non-streaming "chat.completion" body.
std::string build_chat_completion(const response_meta& meta, std::span<const choice_result> choices,
                                  const usage_info& usage);
/// The non-streaming "text_completion" body (text_offset counts from each choice's start).
std::string build_text_completion(const response_meta& meta, std::span<const choice_result> choices,
                                  const usage_info& usage);

/// A served model, for GET /v1/models.
struct model_card {
  std::string id;
  int64_t created = 0;
  std::string owned_by = "troupe";
  int64_t max_model_len = 0;  ///< 0: omitted (vLLM's extension field otherwise)
};
/// The GET /v1/models body: {"object": "list", "data": [...]}.
std::string build_models_list(std::span<const model_card> models);

// ---------------------------------------------------------------------------------------------
// Streaming (server-sent events). Builders return the JSON payload of one event; the HTTP
// writer frames it as "data: <payload>\n\n".

/// The payload that ends every stream.
inline constexpr std::string_view sse_done = "[DONE]";
/// Frames one payload as an SSE event ("data: ...\n\n"; a multi-line payload gets one data
/// line per line, per the SSE spec).
std::string sse_frame(std::string_view payload);
/// The payload of an error met after streaming began: {"error": {...}} (then send [DONE]).
std::string stream_error_payload(const api_error& err);

/// Produces a stream's chunk payloads in OpenAI's order: per choice a role delta first (chat),
/// then content deltas, then a chunk with finish_reason; at the end an optional usage chunk with
/// empty choices, then [DONE]. Not thread-safe: one per stream.
class stream_encoder {
 public:
  stream_encoder(api_endpoint endpoint, response_meta meta, int32_t choices, bool include_usage);

  /// Payloads for new text of one choice (with its tokens' logprobs when asked for).
  std::vector<std::string> on_text(int32_t index, std::string_view text,
                                   std::span<const token_logprobs> logprobs = {},
                                   bool with_logprobs = false);
  /// Payloads that end one choice (a role delta first if it produced no text).
  std::vector<std::string> on_finish(int32_t index, finish_reason reason);
  /// Payloads that end the stream: the usage chunk (if include_usage), then [DONE].
  std::vector<std::string> on_end(const usage_info& usage);

 private:
  /// Chat: OpenAI's first chunk of a choice carries the role with empty content; appended to out
  /// once per choice, before its first text or its finish.
  void open_choice(size_t i, std::vector<std::string>& out);

  api_endpoint endpoint_;
  response_meta meta_;
  bool include_usage_;
  std::vector<bool> role_sent_;        ///< chat: the role delta went out for this choice
  std::vector<int64_t> text_offset_;   ///< completions: bytes of text sent per choice
};

}  // namespace troupe
