// Response bodies and SSE chunk payloads of the OpenAI codec.

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "runtime/api/openai.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

// Token texts may hold partial UTF-8 (byte-level BPE pieces): dump() would throw on them, so
// invalid bytes become U+FFFD; the exact bytes travel in the "bytes" fields.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// JSON has no -inf; vLLM sends -9999.0 for an impossible token, and clients expect a number.
double finite_logprob(float lp) { return std::isfinite(lp) ? static_cast<double>(lp) : -9999.0; }

json bytes_of(const std::string& s) {
  json arr = json::array();
  for (unsigned char c : s) arr.push_back(static_cast<int>(c));
  return arr;
}

json chat_logprobs(std::span<const token_logprobs> tokens) {
  json content = json::array();
  for (const auto& t : tokens) {
    json top = json::array();
    for (const auto& c : t.top)
      top.push_back({{"token", c.token}, {"logprob", finite_logprob(c.logprob)}, {"bytes", bytes_of(c.token)}});
    content.push_back({{"token", t.token},
                       {"logprob", finite_logprob(t.logprob)},
                       {"bytes", bytes_of(t.token)},
                       {"top_logprobs", std::move(top)}});
  }
  return json{{"content", std::move(content)}};
}

// offset: byte offset of the first token in the choice's text.
json completion_logprobs(std::span<const token_logprobs> tokens, int64_t offset) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const auto& t : tokens) {
    toks.push_back(t.token);
    lps.push_back(finite_logprob(t.logprob));
    json top = json::object();
    for (const auto& c : t.top) top[c.token] = finite_logprob(c.logprob);
    tops.push_back(std::move(top));
    offs.push_back(offset);
    offset += static_cast<int64_t>(t.token.size());
  }
  return json{{"tokens", std::move(toks)},
              {"token_logprobs", std::move(lps)},
              {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offs)}};
}

json usage_json(const usage_info& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json envelope(const response_meta& meta, std::string_view object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

json fin_json(std::optional<finish_reason> f) {
  return f ? json(std::string(to_string(*f))) : json(nullptr);
}

}  // namespace

std::string_view to_string(finish_reason reason) {
  switch (reason) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
  }
  return "stop";
}

std::string make_response_id(std::string_view prefix) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
  for (int i = 0; i < 24; ++i) id += alphabet[pick(rng)];
  return id;
}

std::string build_chat_completion(const response_meta& meta, std::span<const choice_result> choices,
                                  const usage_info& usage) {
  json body = envelope(meta, "chat.completion");
  json arr = json::array();
  for (const auto& c : choices) {
    arr.push_back({{"index", c.index},
                   {"message", {{"role", "assistant"}, {"content", c.text}}},
                   {"logprobs", c.logprobs ? chat_logprobs(*c.logprobs) : json(nullptr)},
                   {"finish_reason", to_string(c.finish)}});
  }
  body["choices"] = std::move(arr);
  body["usage"] = usage_json(usage);
  return dump(body);
}

std::string build_text_completion(const response_meta& meta, std::span<const choice_result> choices,
                                  const usage_info& usage) {
  json body = envelope(meta, "text_completion");
  json arr = json::array();
  for (const auto& c : choices) {
    arr.push_back({{"index", c.index},
                   {"text", c.text},
                   {"logprobs", c.logprobs ? completion_logprobs(*c.logprobs, 0) : json(nullptr)},
                   {"finish_reason", to_string(c.finish)}});
  }
  body["choices"] = std::move(arr);
  body["usage"] = usage_json(usage);
  return dump(body);
}

std::string build_models_list(std::span<const model_card> models) {
  json data = json::array();
  for (const auto& m : models) {
    json card = {{"id", m.id}, {"object", "model"}, {"created", m.created}, {"owned_by", m.owned_by}};
    if (m.max_model_len > 0) card["max_model_len"] = m.max_model_len;
    data.push_back(std::move(card));
  }
  return dump(json{{"object", "list"}, {"data", std::move(data)}});
}

std::string sse_frame(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  size_t start = 0;
  while (true) {
    const size_t nl = payload.find('\n', start);
    out += "data: ";
    out.append(payload.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  out += '\n';
  return out;
}

std::string stream_error_payload(const api_error& err) {
  // The same {"error": {...}} object as a non-streaming error, as vLLM and OpenAI send it.
  return err.body();
}

// ---------------------------------------------------------------------------------------------

stream_encoder::stream_encoder(api_endpoint endpoint, response_meta meta, int32_t choices,
                               bool include_usage)
    : endpoint_(endpoint),
      meta_(std::move(meta)),
      include_usage_(include_usage),
      role_sent_(static_cast<size_t>(std::max(choices, 0)), false),
      text_offset_(static_cast<size_t>(std::max(choices, 0)), 0) {}

namespace {

// One chunk with one choice. For chat, delta is the delta object; for completions, text.
std::string one_chunk(api_endpoint endpoint, const response_meta& meta, bool include_usage,
                      int32_t index, json delta_or_text, std::optional<finish_reason> fin,
                      json logprobs) {
  const bool chat = endpoint == api_endpoint::chat_completions;
  json body = envelope(meta, chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", index}};
  choice[chat ? "delta" : "text"] = std::move(delta_or_text);
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = fin_json(fin);
  body["choices"] = json::array({std::move(choice)});
  // OpenAI: with include_usage every chunk carries "usage": null, and the last one the totals.
  if (include_usage) body["usage"] = nullptr;
  return dump(body);
}

}  // namespace

void stream_encoder::open_choice(size_t i, std::vector<std::string>& out) {
  if (role_sent_[i]) return;
  out.push_back(one_chunk(endpoint_, meta_, include_usage_, static_cast<int32_t>(i),
                          json{{"role", "assistant"}, {"content", ""}}, std::nullopt, nullptr));
  role_sent_[i] = true;
}

std::vector<std::string> stream_encoder::on_text(int32_t index, std::string_view text,
                                                 std::span<const token_logprobs> logprobs,
                                                 bool with_logprobs) {
  std::vector<std::string> out;
  if (index < 0 || static_cast<size_t>(index) >= role_sent_.size()) return out;
  const size_t i = static_cast<size_t>(index);
  if (endpoint_ == api_endpoint::chat_completions) {
    open_choice(i, out);
    out.push_back(one_chunk(endpoint_, meta_, include_usage_, index,
                            json{{"content", std::string(text)}}, std::nullopt,
                            with_logprobs ? chat_logprobs(logprobs) : json(nullptr)));
  } else {
    out.push_back(one_chunk(endpoint_, meta_, include_usage_, index, json(std::string(text)),
                            std::nullopt,
                            with_logprobs ? completion_logprobs(logprobs, text_offset_[i]) : json(nullptr)));
    text_offset_[i] += static_cast<int64_t>(text.size());
  }
  return out;
}

std::vector<std::string> stream_encoder::on_finish(int32_t index, finish_reason reason) {
  std::vector<std::string> out;
  if (index < 0 || static_cast<size_t>(index) >= role_sent_.size()) return out;
  const size_t i = static_cast<size_t>(index);
  if (endpoint_ == api_endpoint::chat_completions) {
    open_choice(i, out);
    out.push_back(one_chunk(endpoint_, meta_, include_usage_, index, json::object(), reason, nullptr));
  } else {
    out.push_back(one_chunk(endpoint_, meta_, include_usage_, index, json(""), reason, nullptr));
  }
  return out;
}

std::vector<std::string> stream_encoder::on_end(const usage_info& usage) {
  std::vector<std::string> out;
  if (include_usage_) {
    const bool chat = endpoint_ == api_endpoint::chat_completions;
    json body = envelope(meta_, chat ? "chat.completion.chunk" : "text_completion");
    body["choices"] = json::array();
    body["usage"] = usage_json(usage);
    out.push_back(dump(body));
  }
  out.emplace_back(sse_done);
  return out;
}

}  // namespace troupe
