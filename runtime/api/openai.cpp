// Errors and request parsing of the OpenAI codec (responses: openai_response.cpp).

#include "runtime/api/openai.hpp"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

using json = nlohmann::json;

json null_or(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// The field readers below return an error for a present field of the wrong type and leave the
// output alone for an absent or null field (OpenAI treats null as "not given").
using maybe_error = std::optional<api_error>;

#define TROUPE_API_TRY(expr)                          \
  do {                                                \
    if (auto troupe_api_err_ = (expr)) return std::move(*troupe_api_err_); \
  } while (0)

const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

api_error wrong_type(const std::string& name, std::string_view expected) {
  return invalid_request("Invalid type for '" + name + "': expected " + std::string(expected) + ".",
                         name, "invalid_type");
}

template <class T>
std::string show(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    std::string s = json(v).dump();
    return s;
  } else {
    return std::to_string(v);
  }
}

template <class T>
api_error out_of_range(const std::string& name, std::string_view range, T got) {
  return invalid_request("Invalid value for '" + name + "': expected " + std::string(range) +
                             ", got " + show(got) + ".",
                         name);
}

maybe_error read_number(const json& obj, const char* name, std::optional<double>& out) {
  const json* v = field(obj, name);
  if (!v) return {};
  if (!v->is_number()) return wrong_type(name, "a number");
  out = v->get<double>();
  return {};
}

// Integers: a JSON integer, or a float with no fractional part (pydantic's lax mode, which
// OpenAI's and vLLM's servers use, accepts 2.0 for an integer field).
maybe_error read_int_value(const json& v, const std::string& name, int64_t& out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return out_of_range(name, "a 64-bit integer", u);
    out = static_cast<int64_t>(u);
    return {};
  }
  if (v.is_number_integer()) {
    out = v.get<int64_t>();
    return {};
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      out = static_cast<int64_t>(d);
      return {};
    }
  }
  return wrong_type(name, "an integer");
}

maybe_error read_int(const json& obj, const char* name, std::optional<int64_t>& out) {
  const json* v = field(obj, name);
  if (!v) return {};
  int64_t i = 0;
  TROUPE_API_TRY(read_int_value(*v, name, i));
  out = i;
  return {};
}

maybe_error read_bool(const json& obj, const char* name, std::optional<bool>& out) {
  const json* v = field(obj, name);
  if (!v) return {};
  if (!v->is_boolean()) return wrong_type(name, "a boolean");
  out = v->get<bool>();
  return {};
}

maybe_error read_string(const json& obj, const char* name, std::optional<std::string>& out) {
  const json* v = field(obj, name);
  if (!v) return {};
  if (!v->is_string()) return wrong_type(name, "a string");
  out = v->get<std::string>();
  return {};
}

// A float field with an inclusive range; the range is checked here (with OpenAI's bounds) so the
// error names the field even where sampling_params::validate() is looser.
maybe_error read_float_in(const json& obj, const char* name, double lo, double hi,
                          std::string_view range, float& out) {
  std::optional<double> v;
  TROUPE_API_TRY(read_number(obj, name, v));
  if (!v) return {};
  if (!(*v >= lo && *v <= hi)) return out_of_range(name, range, *v);
  out = static_cast<float>(*v);
  return {};
}

maybe_error parse_stop(const json& obj, const request_limits& limits,
                       std::vector<std::string>& out) {
  const json* v = field(obj, "stop");
  if (!v) return {};
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const json& s : *v) {
      if (!s.is_string()) return wrong_type("stop", "a string or an array of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    return wrong_type("stop", "a string or an array of strings");
  }
  if (static_cast<int64_t>(out.size()) > limits.max_stop)
    return invalid_request("Invalid value for 'stop': at most " + std::to_string(limits.max_stop) +
                               " stop sequences are allowed, got " + std::to_string(out.size()) + ".",
                           "stop");
  for (const auto& s : out) {
    if (s.empty()) return invalid_request("Invalid value for 'stop': stop sequences must not be empty.", "stop");
  }
  return {};
}

maybe_error parse_stop_token_ids(const json& obj, std::vector<int32_t>& out) {
  const json* v = field(obj, "stop_token_ids");
  if (!v) return {};
  if (!v->is_array()) return wrong_type("stop_token_ids", "an array of integers");
  for (const json& t : *v) {
    int64_t id = 0;
    TROUPE_API_TRY(read_int_value(t, "stop_token_ids", id));
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return out_of_range("stop_token_ids", "token ids >= 0", id);
    out.push_back(static_cast<int32_t>(id));
  }
  return {};
}

// The fields both endpoints share.
maybe_error parse_common(const json& obj, const request_limits& limits, generation_request& req) {
  const json* model = field(obj, "model");
  if (!model)
    return invalid_request("Missing required parameter: 'model'.", "model",
                           "missing_required_parameter");
  if (!model->is_string()) return wrong_type("model", "a string");
  req.model = model->get<std::string>();
  if (req.model.empty()) return invalid_request("Invalid value for 'model': must not be empty.", "model");

  sampling_params& sp = req.sampling;
  TROUPE_API_TRY(read_float_in(obj, "temperature", 0.0, 2.0, "a number in [0, 2]", sp.temperature));
  TROUPE_API_TRY(read_float_in(obj, "top_p", 0.0, 1.0, "a number in (0, 1]", sp.top_p));
  if (sp.top_p == 0.0f) return out_of_range("top_p", "a number in (0, 1]", 0.0);
  TROUPE_API_TRY(read_float_in(obj, "min_p", 0.0, 1.0, "a number in [0, 1]", sp.min_p));
  TROUPE_API_TRY(read_float_in(obj, "presence_penalty", -2.0, 2.0, "a number in [-2, 2]",
                               sp.presence_penalty));
  TROUPE_API_TRY(read_float_in(obj, "frequency_penalty", -2.0, 2.0, "a number in [-2, 2]",
                               sp.frequency_penalty));
  {
    std::optional<double> rp;
    TROUPE_API_TRY(read_number(obj, "repetition_penalty", rp));
    if (rp) {
      if (!(*rp > 0.0) || !std::isfinite(*rp))
        return out_of_range("repetition_penalty", "a number > 0", *rp);
      sp.repetition_penalty = static_cast<float>(*rp);
    }
  }
  {
    std::optional<int64_t> k;
    TROUPE_API_TRY(read_int(obj, "top_k", k));
    if (k) {
      // vLLM: -1 and 0 both mean "off".
      if (*k < -1 || *k > std::numeric_limits<int32_t>::max())
        return out_of_range("top_k", "-1, 0 (off) or a positive integer", *k);
      sp.top_k = static_cast<int32_t>(*k);
    }
  }
  {
    const json* seed = field(obj, "seed");
    if (seed) {
      // Any 64-bit integer: negative seeds keep their bits (OpenAI accepts them).
      if (seed->is_number_unsigned()) {
        sp.seed = seed->get<uint64_t>();
      } else {
        int64_t s = 0;
        TROUPE_API_TRY(read_int_value(*seed, "seed", s));
        sp.seed = static_cast<uint64_t>(s);
      }
    }
  }
  TROUPE_API_TRY(parse_stop(obj, limits, req.stop));
  TROUPE_API_TRY(parse_stop_token_ids(obj, sp.stop_token_ids));
  {
    std::optional<int64_t> n;
    TROUPE_API_TRY(read_int(obj, "n", n));
    if (n) {
      if (*n < 1 || *n > limits.max_n)
        return out_of_range("n", "an integer in [1, " + std::to_string(limits.max_n) + "]", *n);
      req.n = static_cast<int32_t>(*n);
    }
  }
  {
    std::optional<bool> stream;
    TROUPE_API_TRY(read_bool(obj, "stream", stream));
    req.stream = stream.value_or(false);
    if (const json* so = field(obj, "stream_options")) {
      if (!so->is_object()) return wrong_type("stream_options", "an object");
      if (!req.stream)
        return invalid_request("Invalid value for 'stream_options': only allowed when 'stream' is true.",
                               "stream_options");
      if (const json* usage = field(*so, "include_usage")) {
        if (!usage->is_boolean()) return wrong_type("stream_options.include_usage", "a boolean");
        req.include_usage = usage->get<bool>();
      }
    }
  }
  {
    std::optional<bool> ignore_eos;  // vLLM's extension: benchmarks use it to fix output lengths
    TROUPE_API_TRY(read_bool(obj, "ignore_eos", ignore_eos));
    req.ignore_eos = ignore_eos.value_or(false);
  }
  {
    std::optional<std::string> user;
    TROUPE_API_TRY(read_string(obj, "user", user));
    req.user = user.value_or("");
  }
  return {};
}

// max_tokens and (chat) max_completion_tokens; the newer name wins when both are given.
maybe_error parse_max_tokens(const json& obj, bool chat, generation_request& req) {
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (!chat && std::string_view(name) == "max_completion_tokens") continue;
    std::optional<int64_t> v;
    TROUPE_API_TRY(read_int(obj, name, v));
    if (!v) continue;
    if (*v < 1 || *v > std::numeric_limits<int32_t>::max())
      return out_of_range(name, "an integer >= 1", *v);
    req.max_tokens = static_cast<int32_t>(*v);
  }
  return {};
}

// Content: a string, or an array of {"type": "text", "text": ...} parts joined with "\n" (as
// vLLM joins them); null only for an assistant turn (one that carried tool calls).
maybe_error parse_content(const json& msg, const std::string& path, const std::string& role,
                          std::string& out) {
  auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) {
    if (role == "assistant") return {};
    return invalid_request("Missing required parameter: '" + path + ".content'.", path + ".content",
                           "missing_required_parameter");
  }
  if (it->is_string()) {
    out = it->get<std::string>();
    return {};
  }
  if (!it->is_array()) return wrong_type(path + ".content", "a string or an array of content parts");
  bool first = true;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& part = (*it)[i];
    const std::string part_path = path + ".content[" + std::to_string(i) + "]";
    if (!part.is_object()) return wrong_type(part_path, "an object");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string())
      return invalid_request("Missing required parameter: '" + part_path + ".type'.",
                             part_path + ".type", "missing_required_parameter");
    if (*type != "text")
      return invalid_request("Invalid value for '" + part_path + ".type': only 'text' content parts are supported, got '" +
                                 type->get<std::string>() + "'.",
                             part_path + ".type");
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) return wrong_type(part_path + ".text", "a string");
    if (!first) out += '\n';
    out += text->get<std::string>();
    first = false;
  }
  return {};
}

maybe_error parse_messages(const json& obj, std::vector<chat_message>& out) {
  const json* msgs = field(obj, "messages");
  if (!msgs)
    return invalid_request("Missing required parameter: 'messages'.", "messages",
                           "missing_required_parameter");
  if (!msgs->is_array()) return wrong_type("messages", "an array");
  if (msgs->empty())
    return invalid_request("Invalid value for 'messages': expected a non-empty array.", "messages");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string path = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return wrong_type(path, "an object");
    auto role = m.find("role");
    if (role == m.end() || role->is_null())
      return invalid_request("Missing required parameter: '" + path + ".role'.", path + ".role",
                             "missing_required_parameter");
    if (!role->is_string()) return wrong_type(path + ".role", "a string");
    chat_message cm;
    cm.role = role->get<std::string>();
    // "developer" is OpenAI's newer name for the system role.
    if (cm.role == "developer") cm.role = "system";
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
      return invalid_request("Invalid value for '" + path + ".role': supported roles are 'system', "
                                 "'developer', 'user' and 'assistant', got '" + role->get<std::string>() + "'.",
                             path + ".role");
    TROUPE_API_TRY(parse_content(m, path, cm.role, cm.content));
    out.push_back(std::move(cm));
  }
  return {};
}

// A token-id array of a prompt.
maybe_error parse_token_array(const json& arr, const std::string& path, prompt_input& out) {
  if (arr.empty())
    return invalid_request("Invalid value for '" + path + "': a token array must not be empty.", "prompt");
  out.is_tokens = true;
  for (const json& t : arr) {
    int64_t id = 0;
    if (!t.is_number()) return wrong_type("prompt", "a string, an array of strings, or token arrays");
    TROUPE_API_TRY(read_int_value(t, "prompt", id));
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return out_of_range("prompt", "token ids >= 0", id);
    out.token_ids.push_back(static_cast<int32_t>(id));
  }
  return {};
}

// prompt: "text" | ["a", "b"] | [1, 2, 3] | [[1, 2], [3]].
maybe_error parse_prompt(const json& obj, std::vector<prompt_input>& out) {
  const json* p = field(obj, "prompt");
  if (!p)
    return invalid_request("Missing required parameter: 'prompt'.", "prompt",
                           "missing_required_parameter");
  const std::string_view shapes = "a string, an array of strings, or token arrays";
  if (p->is_string()) {
    out.push_back({p->get<std::string>(), {}, false});
    return {};
  }
  if (!p->is_array()) return wrong_type("prompt", shapes);
  if (p->empty()) return invalid_request("Invalid value for 'prompt': expected a non-empty array.", "prompt");
  const json& first = p->front();
  if (first.is_number()) {
    prompt_input in;
    TROUPE_API_TRY(parse_token_array(*p, "prompt", in));
    out.push_back(std::move(in));
    return {};
  }
  for (size_t i = 0; i < p->size(); ++i) {
    const json& e = (*p)[i];
    const std::string path = "prompt[" + std::to_string(i) + "]";
    if (first.is_string() && e.is_string()) {
      out.push_back({e.get<std::string>(), {}, false});
    } else if (first.is_array() && e.is_array()) {
      prompt_input in;
      TROUPE_API_TRY(parse_token_array(e, path, in));
      out.push_back(std::move(in));
    } else {
      return wrong_type("prompt", shapes);
    }
  }
  return {};
}

// Runs sampling_params::validate() as the last line of defence; its message starts with the
// field name, which becomes param.
maybe_error validate_sampling(const sampling_params& sp) {
  status st = sp.validate();
  if (st) return {};
  const std::string& msg = st.error().message();
  const std::string param = msg.substr(0, msg.find_first_of(" :"));
  return invalid_request(msg, param);
}

maybe_error check_choices(const generation_request& req, const request_limits& limits) {
  if (req.choice_count() > limits.max_choices)
    return invalid_request("Invalid value for 'n': prompts x n = " + std::to_string(req.choice_count()) +
                               " choices exceed the limit of " + std::to_string(limits.max_choices) + ".",
                           "n");
  return {};
}

api_result<json> parse_object(std::string_view body) {
  json obj;
  try {
    obj = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    return malformed_json(e.what());  // names the byte position and the cause
  } catch (const json::out_of_range& e) {
    return malformed_json(e.what());  // a number too large for a double (1e400): "number overflow"
  }
  if (!obj.is_object()) return malformed_json("the body must be a JSON object");
  return obj;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string api_error::body() const {
  json err = {{"message", message}, {"type", type}, {"param", null_or(param)}, {"code", null_or(code)}};
  return json{{"error", std::move(err)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

api_error invalid_request(std::string message, std::string param, std::string code) {
  return {400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
}

api_error malformed_json(std::string_view detail) {
  return {400, "We could not parse the JSON body of your request: " + std::string(detail),
          "invalid_request_error", "", "invalid_json"};
}

api_error model_not_found(std::string_view model) {
  return {404, "The model '" + std::string(model) + "' does not exist.", "invalid_request_error",
          "model", "model_not_found"};
}

api_error body_too_large(size_t limit_bytes) {
  return {413, "The request body is larger than the limit of " + std::to_string(limit_bytes) + " bytes.",
          "invalid_request_error", "", "request_too_large"};
}

api_error context_length_exceeded(int64_t prompt_tokens, int64_t max_tokens, int64_t context_length,
                                  std::string param) {
  std::string msg = "This model's maximum context length is " + std::to_string(context_length) +
                    " tokens. However, you requested " + std::to_string(prompt_tokens + max_tokens) +
                    " tokens (" + std::to_string(prompt_tokens) + " in the prompt, " +
                    std::to_string(max_tokens) +
                    " in the completion). Please reduce the length of the prompt or completion.";
  return {400, std::move(msg), "invalid_request_error", std::move(param), "context_length_exceeded"};
}

api_error not_ready(std::string message) {
  return {503, std::move(message), "server_error", "", "service_unavailable"};
}

api_error internal_error(std::string message) {
  return {500, std::move(message), "server_error", "", "internal_error"};
}

api_error to_api_error(const error& err) {
  switch (err.code()) {
    case errc::invalid_argument: return invalid_request(err.message());
    case errc::not_found: return {404, err.message(), "invalid_request_error", "", "not_found"};
    case errc::context_overflow:
      return {400, err.message(), "invalid_request_error", "messages", "context_length_exceeded"};
    case errc::no_kv_blocks:
    case errc::out_of_memory: return not_ready(err.message());
    default: return internal_error(err.message());
  }
}

int32_t generation_request::choice_count() const noexcept {
  const int64_t prompts_n = endpoint == api_endpoint::completions ? static_cast<int64_t>(prompts.size()) : 1;
  const int64_t total = prompts_n * n;
  return total > std::numeric_limits<int32_t>::max() ? std::numeric_limits<int32_t>::max()
                                                     : static_cast<int32_t>(total);
}

api_result<generation_request> parse_chat_request(std::string_view body, const request_limits& limits) {
  auto parsed = parse_object(body);
  if (!parsed) return parsed.error();
  const json& obj = parsed.value();
  generation_request req;
  req.endpoint = api_endpoint::chat_completions;
  TROUPE_API_TRY(parse_common(obj, limits, req));
  TROUPE_API_TRY(parse_messages(obj, req.messages));
  TROUPE_API_TRY(parse_max_tokens(obj, /*chat=*/true, req));

  std::optional<bool> logprobs;
  TROUPE_API_TRY(read_bool(obj, "logprobs", logprobs));
  req.logprobs = logprobs.value_or(false);
  std::optional<int64_t> top;
  TROUPE_API_TRY(read_int(obj, "top_logprobs", top));
  if (top) {
    if (*top < 0 || *top > limits.max_top_logprobs)
      return out_of_range("top_logprobs",
                          "an integer in [0, " + std::to_string(limits.max_top_logprobs) + "]", *top);
    // OpenAI: "logprobs must be set to true if top_logprobs is used".
    if (!req.logprobs)
      return invalid_request("Invalid value for 'top_logprobs': 'logprobs' must be true when "
                             "'top_logprobs' is given.", "top_logprobs");
    req.sampling.logprobs = static_cast<int32_t>(*top);
  }
  req.sampling.chosen_logprob = req.logprobs;
  TROUPE_API_TRY(validate_sampling(req.sampling));
  TROUPE_API_TRY(check_choices(req, limits));
  return req;
}

api_result<generation_request> parse_completion_request(std::string_view body,
                                                        const request_limits& limits) {
  auto parsed = parse_object(body);
  if (!parsed) return parsed.error();
  const json& obj = parsed.value();
  generation_request req;
  req.endpoint = api_endpoint::completions;
  TROUPE_API_TRY(parse_common(obj, limits, req));
  TROUPE_API_TRY(parse_prompt(obj, req.prompts));
  TROUPE_API_TRY(parse_max_tokens(obj, /*chat=*/false, req));

  // Completions: logprobs is the number of top candidates (0 = only the chosen token's).
  std::optional<int64_t> logprobs;
  if (const json* v = field(obj, "logprobs"); v && v->is_boolean())
    return wrong_type("logprobs", "an integer");
  TROUPE_API_TRY(read_int(obj, "logprobs", logprobs));
  if (logprobs) {
    if (*logprobs < 0 || *logprobs > limits.max_completion_logprobs)
      return out_of_range("logprobs",
                          "an integer in [0, " + std::to_string(limits.max_completion_logprobs) + "]",
                          *logprobs);
    req.logprobs = true;
    req.sampling.logprobs = static_cast<int32_t>(*logprobs);
  }
  req.sampling.chosen_logprob = req.logprobs;
  TROUPE_API_TRY(validate_sampling(req.sampling));
  TROUPE_API_TRY(check_choices(req, limits));
  return req;
}

api_result<int32_t> fit_context(int64_t prompt_tokens, std::optional<int32_t> max_tokens,
                                int64_t context_length, std::string param) {
  const int64_t want = max_tokens ? *max_tokens : 0;
  // A prompt that fills the context leaves no room for even one token.
  if (prompt_tokens + std::max<int64_t>(want, 1) > context_length)
    return context_length_exceeded(prompt_tokens, want, context_length, std::move(param));
  if (max_tokens) return *max_tokens;
  return static_cast<int32_t>(std::min<int64_t>(context_length - prompt_tokens,
                                                std::numeric_limits<int32_t>::max()));
}

}  // namespace troupe
