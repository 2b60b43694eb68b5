// GGUF models: hyper-parameters from "{arch}.*" keys, tensors already under canonical names.

#include <cstring>

#include "runtime/format/gguf.hpp"
#include "runtime/model/load_common.hpp"

namespace troupe::detail {

namespace {

class keys {
 public:
  keys(const format::gguf_file& f, std::string arch) : f_(f), arch_(std::move(arch)) {}

  // A missing required key is bad_format naming the key; a present key of the wrong type too.
  expected<int64_t> integer(const std::string& suffix, std::optional<int64_t> fallback = std::nullopt) const {
    const std::string key = arch_ + "." + suffix;
    const auto* v = f_.find(key);
    if (!v) {
      if (fallback) return *fallback;
      return make_error(errc::bad_format, "'" + f_.path().string() + "' lacks the key " + key);
    }
    auto i = v->as_int();
    if (!i) return make_error(errc::bad_format, "'" + f_.path().string() + "': " + key + " is not an integer");
    return *i;
  }
  expected<double> number(const std::string& suffix, double fallback) const {
    const std::string key = arch_ + "." + suffix;
    const auto* v = f_.find(key);
    if (!v) return fallback;
    auto d = v->as_float();
    if (!d) return make_error(errc::bad_format, "'" + f_.path().string() + "': " + key + " is not a number");
    return *d;
  }
  const std::string* string(const std::string& suffix) const {
    const auto* v = f_.find(arch_ + "." + suffix);
    return v ? v->as_string() : nullptr;
  }
  bool has(const std::string& suffix) const { return f_.find(arch_ + "." + suffix) != nullptr; }

 private:
  const format::gguf_file& f_;
  std::string arch_;
};

// The key behind each hyper-parameter finish_weights checks, for its messages.
std::string gguf_key(const std::string& arch, const std::string& field) {
  static const std::pair<const char*, const char*> table[] = {
      {"n_vocab", "vocab_size (or the rows of token_embd.weight)"},
      {"dim", "embedding_length"},
      {"n_layers", "block_count"},
      {"n_heads", "attention.head_count"},
      {"n_kv_heads", "attention.head_count_kv"},
      {"head_dim", "attention.key_length (or embedding_length / attention.head_count)"},
      {"ffn_dim", "feed_forward_length"},
      {"context_length", "context_length"},
      {"norm_eps", "attention.layer_norm_rms_epsilon"},
      {"rope_theta", "rope.freq_base"},
      {"scaling.factor", "rope.scaling.factor"},
      {"scaling.low_freq_factor", "rope.scaling.low_freq_factor"},
      {"scaling.high_freq_factor", "rope.scaling.high_freq_factor"},
      {"scaling.original_context", "rope.scaling.original_context_length"},
  };
  for (const auto& [from, to] : table)
    if (field == from) return arch + "." + to;
  return field;
}

}  // namespace

expected<model_weights> load_gguf_weights(const std::filesystem::path& path) {
  auto opened = format::gguf_file::open(path);
  if (!opened) return unexpected{opened.error()};
  const auto& f = **opened;
  model_weights w;
  w.format = "gguf";
  w.path = path;
  w.gguf = *opened;
  w.storage.push_back(*opened);

  const auto* arch_value = f.find("general.architecture");
  if (!arch_value || !arch_value->as_string())
    return make_error(errc::bad_format, "'" + path.string() + "' has no general.architecture");
  const std::string arch = *arch_value->as_string();
  auto& hp = w.hp;
  if (arch == "llama" || arch == "mistral") {
    hp.architecture = "llama";
    // llama.cpp's converter permutes HF Q/K rows back to adjacent pairs for llama.
    hp.rope = cpu::rope_style::interleaved;
  } else if (arch == "qwen2") {
    hp.architecture = "qwen2";
    hp.rope = cpu::rope_style::neox;  // qwen2 GGUFs keep HF's rotate-half layout
  } else {
    return make_error(errc::unsupported_architecture,
                      "'" + path.string() + "' is a '" + arch + "' model; supported: llama, mistral, qwen2");
  }
  const keys k(f, arch);
  TROUPE_ASSIGN(hp.n_layers, k.integer("block_count"));
  TROUPE_ASSIGN(hp.dim, k.integer("embedding_length"));
  TROUPE_ASSIGN(hp.ffn_dim, k.integer("feed_forward_length"));
  TROUPE_ASSIGN(hp.n_heads, k.integer("attention.head_count"));
  TROUPE_ASSIGN(hp.n_kv_heads, k.integer("attention.head_count_kv", hp.n_heads));
  TROUPE_ASSIGN(hp.context_length, k.integer("context_length", int64_t{2048}));
  double eps = 0, theta = 0;
  TROUPE_ASSIGN(eps, k.number("attention.layer_norm_rms_epsilon", 1e-5));
  TROUPE_ASSIGN(theta, k.number("rope.freq_base", 10000.0));
  hp.norm_eps = static_cast<float>(eps);
  hp.rope_theta = static_cast<float>(theta);
  if (hp.n_heads <= 0 || hp.dim <= 0)
    return make_error(errc::bad_format, "'" + path.string() + "': embedding_length and head_count must be positive");
  if (!k.has("attention.key_length") && hp.dim % hp.n_heads != 0)
    return make_error(errc::bad_format, "'" + path.string() + "': embedding_length " + std::to_string(hp.dim) +
                                            " is not a multiple of head_count " + std::to_string(hp.n_heads));
  TROUPE_ASSIGN(hp.head_dim, k.integer("attention.key_length", hp.dim / hp.n_heads));
  int64_t n_rot = 0;
  TROUPE_ASSIGN(n_rot, k.integer("rope.dimension_count", hp.head_dim));
  if (n_rot != hp.head_dim)
    return make_error(errc::unsupported_architecture,
                      "'" + path.string() + "': rope.dimension_count " + std::to_string(n_rot) +
                          " differs from the head size " + std::to_string(hp.head_dim) + " (partial RoPE)");

  // Llama 3.1 style scaling: converters store it as the rope_freqs.weight tensor; a few files
  // spell it out in rope.scaling.* keys instead.
  if (const auto* type = k.string("rope.scaling.type"); type && *type != "none") {
    double factor = 1.0;
    TROUPE_ASSIGN(factor, k.number("rope.scaling.factor", 1.0));
    if (*type == "llama3") {
      hp.scaling.llama3 = true;
      hp.scaling.factor = static_cast<float>(factor);
      double lo = 0, hi = 0;
      TROUPE_ASSIGN(lo, k.number("rope.scaling.low_freq_factor", 1.0));
      TROUPE_ASSIGN(hi, k.number("rope.scaling.high_freq_factor", 4.0));
      hp.scaling.low_freq_factor = static_cast<float>(lo);
      hp.scaling.high_freq_factor = static_cast<float>(hi);
      TROUPE_ASSIGN(hp.scaling.original_context, k.integer("rope.scaling.original_context_length", int64_t{8192}));
    } else if (factor != 1.0) {
      return make_error(errc::unsupported_architecture,
                        "'" + path.string() + "': RoPE scaling '" + *type + "' is not supported");
    }
  }
  hp.scaling.freq_factors = f.tensor("rope_freqs.weight") != nullptr;

  for (const auto& t : f.tensors()) w.tensors[t.name] = tensor_ref{t.type, t.shape, t.data, t.nbytes};
  const auto* embd = f.tensor("token_embd.weight");
  int64_t vocab_fallback = embd && embd->shape.size() == 2 ? embd->shape[0] : 0;
  TROUPE_ASSIGN(hp.n_vocab, k.integer("vocab_size", vocab_fallback));
  if (hp.n_vocab == 0) {  // neither key nor tensor: let the check below name the missing tensor
    if (const auto* tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->as_array())
      hp.n_vocab = static_cast<int64_t>(tokens->as_array()->size());
    if (!embd) return make_error(errc::not_found, "model '" + path.string() + "': no tensor 'token_embd.weight'");
  }
  // Some converters (llama2.c's, for one) store a tied classifier as a second copy of the
  // embeddings. Treat a bit-identical copy as tied: the model then reads one tensor, not two. The
  // compare stops at the first differing byte, so an untied model costs almost nothing here.
  const auto* out = f.tensor("output.weight");
  hp.tied_embeddings = out == nullptr ||
                       (embd && out->type == embd->type && out->shape == embd->shape &&
                        std::memcmp(out->data, embd->data, out->nbytes) == 0);
  if (out && hp.tied_embeddings) w.tensors.erase("output.weight");
  hp.qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr || arch == "qwen2";
  TROUPE_TRY(finish_weights(w, {}, [&arch](const std::string& field) { return gguf_key(arch, field); }));
  return w;
}

}  // namespace troupe::detail
