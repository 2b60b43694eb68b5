// Hugging Face model directories: config.json plus a (possibly sharded) safetensors checkpoint.
// Q/K rows stay in HF's rotate-half order (memory-mapped as they are); the model applies neox RoPE.

#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/format/safetensors.hpp"
#include "runtime/model/load_common.hpp"

namespace troupe::detail {

namespace {

using json = nlohmann::json;

// Reads config fields with type checks (nlohmann throws on a wrong type; a user file must not).
class config_reader {
 public:
  config_reader(const json& j, std::filesystem::path path) : j_(j), path_(std::move(path)) {}

  expected<int64_t> integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (fallback) return *fallback;
      return make_error(errc::bad_format, "'" + path_.string() + "' lacks \"" + key + "\"");
    }
    if (!it->is_number_integer())
      return make_error(errc::bad_format, "'" + path_.string() + "': \"" + key + "\" is not an integer");
    return it->get<int64_t>();
  }
  expected<double> number(const char* key, double fallback) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return fallback;
    if (!it->is_number())
      return make_error(errc::bad_format, "'" + path_.string() + "': \"" + key + "\" is not a number");
    return it->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    auto it = j_.find(key);
    return it != j_.end() && it->is_boolean() ? it->get<bool>() : fallback;
  }
  std::string string(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

 private:
  const json& j_;
  std::filesystem::path path_;
};

// Canonical name of an HF tensor name; empty for tensors troupe does not use.
std::string canonical_name(const std::string& hf, bool tied) {
  static const std::regex layer_re(R"(model\.layers\.(\d+)\.(.+))");
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return tied ? std::string() : "output.weight";
  std::smatch m;
  if (!std::regex_match(hf, m, layer_re)) return {};
  static const std::pair<const char*, const char*> table[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (const auto& [from, to] : table)
    if (m[2] == from) return "blk." + m[1].str() + "." + to;
  return {};
}

// The inverse of canonical_name, for messages about missing tensors.
std::string hf_name(const std::string& canonical) {
  static const std::regex blk_re(R"(blk\.(\d+)\.(.+))");
  if (canonical == "token_embd.weight") return "model.embed_tokens.weight";
  if (canonical == "output_norm.weight") return "model.norm.weight";
  if (canonical == "output.weight") return "lm_head.weight";
  std::smatch m;
  if (!std::regex_match(canonical, m, blk_re)) return canonical;
  for (const char* hf : {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                         "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                         "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                         "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
    const std::string full = "model.layers." + m[1].str() + "." + hf;
    if (canonical_name(full, false) == canonical) return full;
  }
  return canonical;
}

// The config.json field behind each hyper-parameter finish_weights checks, for its messages.
std::string config_key(const std::string& field) {
  static const std::pair<const char*, const char*> table[] = {
      {"n_vocab", "vocab_size"},
      {"dim", "hidden_size"},
      {"n_layers", "num_hidden_layers"},
      {"n_heads", "num_attention_heads"},
      {"n_kv_heads", "num_key_value_heads"},
      {"head_dim", "head_dim"},
      {"ffn_dim", "intermediate_size"},
      {"context_length", "max_position_embeddings"},
      {"norm_eps", "rms_norm_eps"},
      {"rope_theta", "rope_theta"},
      {"scaling.factor", "rope_scaling.factor"},
      {"scaling.low_freq_factor", "rope_scaling.low_freq_factor"},
      {"scaling.high_freq_factor", "rope_scaling.high_freq_factor"},
      {"scaling.original_context", "rope_scaling.original_max_position_embeddings"},
  };
  for (const auto& [from, to] : table)
    if (field == from) return std::string("config.json ") + to;
  return field;
}

// bos/eos/pad_token_id in config.json or generation_config.json: null, -1 (none), an id or a list of
// ids, each inside the vocabulary. The tokenizer takes its special ids from these files; an id past
// the vocabulary would index past the logits, and dropping it would leave a model that never stops.
status check_token_ids(const json& cfg, const std::filesystem::path& file, int64_t n_vocab) {
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) continue;
    const json ids = it->is_array() ? *it : json::array({*it});
    for (const auto& id : ids) {
      const bool ok = id.is_number_integer() &&
                      (id.get<int64_t>() == -1 || (id.get<int64_t>() >= 0 && id.get<int64_t>() < n_vocab));
      if (!ok)
        return make_error(errc::bad_format, "'" + file.string() + "': " + key + " " + it->dump() +
                                                " is not a token id inside the vocabulary of " +
                                                std::to_string(n_vocab) + " (or -1 for none)");
    }
  }
  return {};
}

}  // namespace

expected<model_weights> load_hf_weights(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  std::ifstream in(config_path);
  if (!in) return make_error(errc::not_found, "cannot read '" + config_path.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(errc::bad_format, "'" + config_path.string() + "' is not a JSON object");
  const config_reader cfg(j, config_path);

  std::string type = cfg.string("model_type");
  if (type.empty()) {
    auto it = j.find("architectures");
    if (it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
      const std::string a = (*it)[0].get<std::string>();
      if (a == "LlamaForCausalLM") type = "llama";
      else if (a == "MistralForCausalLM") type = "mistral";
      else if (a == "Qwen2ForCausalLM") type = "qwen2";
      else type = a;
    }
  }
  model_weights w;
  w.format = "safetensors";
  w.path = dir;
  auto& hp = w.hp;
  if (type == "llama" || type == "mistral") {
    hp.architecture = "llama";
    hp.qkv_bias = cfg.boolean("attention_bias", false);
  } else if (type == "qwen2") {
    hp.architecture = "qwen2";
    hp.qkv_bias = true;
  } else {
    return make_error(errc::unsupported_architecture,
                      "'" + config_path.string() + "' describes a '" + (type.empty() ? "(unnamed)" : type) +
                          "' model; supported: llama, mistral, qwen2");
  }
  hp.rope = cpu::rope_style::neox;
  TROUPE_ASSIGN(hp.dim, cfg.integer("hidden_size"));
  TROUPE_ASSIGN(hp.ffn_dim, cfg.integer("intermediate_size"));
  TROUPE_ASSIGN(hp.n_layers, cfg.integer("num_hidden_layers"));
  TROUPE_ASSIGN(hp.n_heads, cfg.integer("num_attention_heads"));
  TROUPE_ASSIGN(hp.n_kv_heads, cfg.integer("num_key_value_heads", hp.n_heads));
  if (hp.n_heads <= 0 || hp.dim <= 0)
    return make_error(errc::bad_format, "'" + config_path.string() + "': hidden_size and num_attention_heads must be positive");
  if ((j.find("head_dim") == j.end() || j["head_dim"].is_null()) && hp.dim % hp.n_heads != 0)
    return make_error(errc::bad_format, "'" + config_path.string() + "': hidden_size " + std::to_string(hp.dim) +
                                            " is not a multiple of num_attention_heads " + std::to_string(hp.n_heads));
  TROUPE_ASSIGN(hp.head_dim, cfg.integer("head_dim", hp.dim / hp.n_heads));
  TROUPE_ASSIGN(hp.context_length, cfg.integer("max_position_embeddings", int64_t{2048}));
  double eps = 0, theta = 0;
  TROUPE_ASSIGN(eps, cfg.number("rms_norm_eps", 1e-6));
  TROUPE_ASSIGN(theta, cfg.number("rope_theta", 10000.0));
  hp.norm_eps = static_cast<float>(eps);
  hp.rope_theta = static_cast<float>(theta);
  hp.tied_embeddings = cfg.boolean("tie_word_embeddings", false);

  if (auto rs = j.find("rope_scaling"); rs != j.end() && rs->is_object()) {
    const config_reader s(*rs, config_path);
    std::string rope_type = s.string("rope_type");
    if (rope_type.empty()) rope_type = s.string("type");
    double factor = 1.0;
    TROUPE_ASSIGN(factor, s.number("factor", 1.0));
    if (rope_type == "llama3") {
      hp.scaling.llama3 = true;
      hp.scaling.factor = static_cast<float>(factor);
      double lo = 0, hi = 0;
      TROUPE_ASSIGN(lo, s.number("low_freq_factor", 1.0));
      TROUPE_ASSIGN(hi, s.number("high_freq_factor", 4.0));
      hp.scaling.low_freq_factor = static_cast<float>(lo);
      hp.scaling.high_freq_factor = static_cast<float>(hi);
      TROUPE_ASSIGN(hp.scaling.original_context, s.integer("original_max_position_embeddings", int64_t{8192}));
    } else if (rope_type != "default" && factor != 1.0) {
      return make_error(errc::unsupported_architecture,
                        "'" + config_path.string() + "': rope_scaling type '" + rope_type + "' is not supported");
    }
  }

  auto ck = format::safetensors_checkpoint::open(dir);
  if (!ck) return unexpected{ck.error()};
  for (const auto& f : ck->files()) w.storage.push_back(f);
  for (const auto& name : ck->names()) {
    const std::string canonical = canonical_name(name, hp.tied_embeddings);
    if (canonical.empty()) continue;
    const auto* t = ck->tensor(name);
    w.tensors[canonical] = tensor_ref{t->type, t->shape, t->data, t->nbytes};
  }
  const auto* embd = ck->tensor("model.embed_tokens.weight");
  TROUPE_ASSIGN(hp.n_vocab, cfg.integer("vocab_size", embd && !embd->shape.empty() ? embd->shape[0] : 0));

  std::error_code ec;
  if (std::filesystem::exists(dir / "tokenizer.json", ec)) w.tokenizer_path = dir / "tokenizer.json";
  else if (std::filesystem::exists(dir / "tokenizer.model", ec)) w.tokenizer_path = dir / "tokenizer.model";

  TROUPE_TRY(finish_weights(w, hf_name, config_key));
  TROUPE_TRY(check_token_ids(j, config_path, hp.n_vocab));
  if (std::ifstream gen(dir / "generation_config.json"); gen) {
    std::stringstream text;
    text << gen.rdbuf();
    const json g = json::parse(text.str(), nullptr, false);
    if (g.is_object()) TROUPE_TRY(check_token_ids(g, dir / "generation_config.json", hp.n_vocab));
  }
  return w;
}

}  // namespace troupe::detail
