// The tokenizer in a GGUF file's tokenizer.ggml.* metadata, read as llama.cpp reads it.

#include "runtime/format/gguf.hpp"
#include "runtime/tokenizer/bpe.hpp"
#include "runtime/tokenizer/spm.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

namespace {

using format::gguf_file;
using format::gguf_value;

std::string where(const gguf_file& g) { return g.path().string(); }

// The "no token" an id key may hold: llama.cpp's LLAMA_TOKEN_NULL (-1), which a writer of an
// unsigned key stores as UINT32_MAX.
bool is_no_token(int64_t id) { return id == -1 || id == 0xFFFFFFFF; }

// Every tokenizer.ggml.*_token_id key (bos, eos, unknown, padding, eot, ...) must name a token of the
// vocabulary or none: an id past it would index past the embeddings and the logits, and dropping it
// quietly would serve a model that never stops or pads with garbage.
status check_token_ids(const gguf_file& g, size_t n_vocab) {
  constexpr std::string_view prefix = "tokenizer.ggml.", suffix = "_token_id";
  for (const auto& [key, value] : g.metadata()) {
    if (!key.starts_with(prefix) || !key.ends_with(suffix)) continue;
    const auto id = value.as_int();
    if (!id) return make_error(errc::bad_format, where(g) + ": " + key + " is not an integer");
    if (is_no_token(*id) || (*id >= 0 && static_cast<uint64_t>(*id) < n_vocab)) continue;
    return make_error(errc::bad_format, where(g) + ": " + key + " is " + std::to_string(*id) +
                                            ", outside the vocabulary of " + std::to_string(n_vocab) +
                                            " tokens (tokenizer.ggml.tokens)");
  }
  return {};
}

// An id key (checked by check_token_ids); absent gives the fallback, "no token" -1.
int32_t id_key(const gguf_file& g, std::string_view key, size_t n_vocab, int32_t fallback) {
  const gguf_value* v = g.find(key);
  if (v == nullptr) return fallback;
  const auto i = v->as_int();
  if (!i || *i < 0 || static_cast<uint64_t>(*i) >= n_vocab) return -1;
  return static_cast<int32_t>(*i);
}

bool bool_key(const gguf_file& g, std::string_view key, bool fallback) {
  const gguf_value* v = g.find(key);
  if (v == nullptr) return fallback;
  return v->as_bool().value_or(fallback);
}

std::string string_key(const gguf_file& g, std::string_view key) {
  const gguf_value* v = g.find(key);
  const std::string* s = v ? v->as_string() : nullptr;
  return s ? *s : std::string();
}

// A string array key, or an error naming the key.
expected<std::vector<std::string>> strings(const gguf_file& g, std::string_view key) {
  const gguf_value* v = g.find(key);
  if (v == nullptr) return make_error(errc::not_found, where(g) + ": no " + std::string(key));
  const auto* arr = v->as_array();
  if (arr == nullptr) return make_error(errc::bad_format, where(g) + ": " + std::string(key) + " is not an array");
  std::vector<std::string> out;
  out.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string* s = (*arr)[i].as_string();
    if (s == nullptr) {
      return make_error(errc::bad_format, where(g) + ": " + std::string(key) + "[" + std::to_string(i) + "] is not a string");
    }
    out.push_back(*s);
  }
  return out;
}

// token_type, or all normal when absent; its length must match the tokens'.
expected<std::vector<piece_type>> types(const gguf_file& g, size_t n) {
  const gguf_value* v = g.find("tokenizer.ggml.token_type");
  if (v == nullptr) return std::vector<piece_type>(n, piece_type::normal);
  const auto* arr = v->as_array();
  if (arr == nullptr || arr->size() != n) {
    return make_error(errc::bad_format, where(g) + ": tokenizer.ggml.token_type must be an array of " +
                                            std::to_string(n) + " integers");
  }
  std::vector<piece_type> out;
  out.reserve(n);
  for (const auto& e : *arr) out.push_back(piece_type_from_int(e.as_int().value_or(1)));
  return out;
}

expected<std::unique_ptr<tokenizer>> load_llama_vocab(const gguf_file& g) {
  auto tokens = strings(g, "tokenizer.ggml.tokens");
  if (!tokens) return unexpected{tokens.error()};
  const size_t n = tokens->size();
  TROUPE_TRY(check_token_ids(g, n));
  auto ty = types(g, n);
  if (!ty) return unexpected{ty.error()};
  spm_vocab v;
  v.pieces = std::move(*tokens);
  v.types = std::move(*ty);
  if (const gguf_value* s = g.find("tokenizer.ggml.scores")) {
    const auto* arr = s->as_array();
    if (arr == nullptr || arr->size() != n) {
      return make_error(errc::bad_format, where(g) + ": tokenizer.ggml.scores must be an array of " +
                                              std::to_string(n) + " floats");
    }
    v.scores.reserve(n);
    for (const auto& e : *arr) v.scores.push_back(static_cast<float>(e.as_float().value_or(0.0)));
  }
  v.unk_id = id_key(g, "tokenizer.ggml.unknown_token_id", n, 0);
  v.bos_id = id_key(g, "tokenizer.ggml.bos_token_id", n, 1);
  v.eos_id = id_key(g, "tokenizer.ggml.eos_token_id", n, 2);
  v.add_bos = bool_key(g, "tokenizer.ggml.add_bos_token", true);
  v.add_eos = bool_key(g, "tokenizer.ggml.add_eos_token", false);
  // GGUF carries no normalizer: llama.cpp adds the space prefix and keeps whitespace as it is.
  v.normalizer.add_dummy_prefix = bool_key(g, "tokenizer.ggml.add_space_prefix", true);
  v.normalizer.remove_extra_whitespaces = false;
  v.byte_fallback = true;
  v.chat_template = string_key(g, "tokenizer.chat_template");
  return spm_tokenizer::create(std::move(v), where(g));
}

expected<std::unique_ptr<tokenizer>> load_gpt2_vocab(const gguf_file& g) {
  auto tokens = strings(g, "tokenizer.ggml.tokens");
  if (!tokens) return unexpected{tokens.error()};
  const size_t n = tokens->size();
  TROUPE_TRY(check_token_ids(g, n));
  auto ty = types(g, n);
  if (!ty) return unexpected{ty.error()};
  auto merges = strings(g, "tokenizer.ggml.merges");
  if (!merges) return unexpected{merges.error()};

  bpe_vocab v;
  v.tokens = std::move(*tokens);
  v.types = std::move(*ty);
  v.merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string& m = (*merges)[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      return make_error(errc::bad_format, where(g) + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + m +
                                              "' is not two tokens separated by a space");
    }
    v.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  std::string pre = string_key(g, "tokenizer.ggml.pre");
  if (pre.empty()) pre = "default";
  bool default_add_bos = false;
  if (pre == "default" || pre == "gpt2") {
    v.pre.add_split(split_pattern::gpt2);
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    v.pre.add_split(split_pattern::llama3);
    v.ignore_merges = true;
    default_add_bos = true;
  } else if (pre == "qwen2") {
    v.pre.add_split(split_pattern::qwen2);
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    v.pre.add_split(split_pattern::digit);
    v.pre.add_split(split_pattern::gpt2);
  } else {
    return make_error(errc::bad_format, where(g) + ": tokenizer.ggml.pre '" + pre +
                                            "' is not supported (troupe knows default, gpt2, llama-bpe, qwen2, smollm)");
  }
  v.unk_id = id_key(g, "tokenizer.ggml.unknown_token_id", n, -1);
  v.bos_id = id_key(g, "tokenizer.ggml.bos_token_id", n, -1);
  v.eos_id = id_key(g, "tokenizer.ggml.eos_token_id", n, -1);
  if (const gguf_value* eot = g.find("tokenizer.ggml.eot_token_id")) {
    if (auto i = eot->as_int(); i && *i >= 0 && static_cast<uint64_t>(*i) < n) v.extra_stop_ids.push_back(static_cast<int32_t>(*i));
  }
  v.add_bos = bool_key(g, "tokenizer.ggml.add_bos_token", default_add_bos);
  v.add_eos = bool_key(g, "tokenizer.ggml.add_eos_token", false);
  v.chat_template = string_key(g, "tokenizer.chat_template");
  return bpe_tokenizer::create(std::move(v), where(g));
}

}  // namespace

expected<std::unique_ptr<tokenizer>> load_tokenizer(const format::gguf_file& gguf) {
  const std::string model = string_key(gguf, "tokenizer.ggml.model");
  if (model.empty()) return make_error(errc::not_found, where(gguf) + ": no tokenizer (tokenizer.ggml.model is missing)");
  if (model == "llama") return load_llama_vocab(gguf);
  if (model == "gpt2") return load_gpt2_vocab(gguf);
  return make_error(errc::bad_format, where(gguf) + ": tokenizer.ggml.model '" + model +
                                          "' is not supported (troupe implements 'llama' and 'gpt2')");
}

}  // namespace troupe
