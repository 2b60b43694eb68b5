// Validation of a loaded model against its hyper-parameters, shared by every format.

#include <cmath>
#include <memory>

#include "kernels/dtype.hpp"
#include "runtime/model/load_common.hpp"

namespace troupe::detail {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// Far above any real model (the largest have dim 16384, 128 heads, 126 layers, vocabularies of
// 256K), and small enough that products such as n_heads * head_dim * n_layers cannot overflow.
constexpr int64_t max_width = int64_t{1} << 20;   // dim, ffn_dim
constexpr int64_t max_count = int64_t{1} << 16;   // n_layers, n_heads, n_kv_heads, head_dim
constexpr int64_t max_vocab = int64_t{1} << 24;   // token ids are int32 everywhere

status check_hparams(const model_weights& w, const key_name_fn& key_name) {
  const auto& hp = w.hp;
  const std::string where = "model '" + w.path.string() + "': ";
  auto key = [&](const std::string& field) { return key_name ? key_name(field) : field; };
  auto bounded = [&](const std::string& field, int64_t v, int64_t hi, const char* why) -> status {
    if (v <= 0 || v > hi)
      return make_error(errc::bad_format, where + key(field) + " is " + std::to_string(v) + ", must be 1 to " +
                                              std::to_string(hi) + why);
    return {};
  };
  TROUPE_TRY(bounded("n_vocab", hp.n_vocab, max_vocab, ""));
  TROUPE_TRY(bounded("dim", hp.dim, max_width, ""));
  TROUPE_TRY(bounded("n_layers", hp.n_layers, max_count, ""));
  TROUPE_TRY(bounded("n_heads", hp.n_heads, max_count, ""));
  TROUPE_TRY(bounded("n_kv_heads", hp.n_kv_heads, max_count, ""));
  TROUPE_TRY(bounded("head_dim", hp.head_dim, max_count, ""));
  TROUPE_TRY(bounded("ffn_dim", hp.ffn_dim, max_width, ""));
  TROUPE_TRY(bounded("context_length", hp.context_length, max_context_length,
                     " (RoPE positions are float32, exact only up to 2^24)"));
  if (hp.n_heads % hp.n_kv_heads != 0)
    return make_error(errc::bad_format, where + std::to_string(hp.n_heads) + " heads (" + key("n_heads") +
                                            ") do not divide into " + std::to_string(hp.n_kv_heads) + " kv heads (" +
                                            key("n_kv_heads") + ")");
  if (hp.head_dim % 2 != 0)
    return make_error(errc::bad_format, where + key("head_dim") + " " + std::to_string(hp.head_dim) +
                                            " is odd (RoPE rotates pairs)");
  auto positive = [&](const std::string& field, float v) -> status {
    if (!(v > 0.0f) || !std::isfinite(v))
      return make_error(errc::bad_format, where + key(field) + " is " + std::to_string(v) + ", must be positive and finite");
    return {};
  };
  TROUPE_TRY(positive("norm_eps", hp.norm_eps));
  TROUPE_TRY(positive("rope_theta", hp.rope_theta));
  if (hp.scaling.llama3) {
    const auto& s = hp.scaling;
    TROUPE_TRY(positive("scaling.factor", s.factor));
    TROUPE_TRY(positive("scaling.low_freq_factor", s.low_freq_factor));
    TROUPE_TRY(positive("scaling.high_freq_factor", s.high_freq_factor));
    // The smoothing between the two divides by their difference.
    if (!(s.high_freq_factor > s.low_freq_factor))
      return make_error(errc::bad_format, where + key("scaling.high_freq_factor") + " must exceed " +
                                              key("scaling.low_freq_factor"));
    TROUPE_TRY(bounded("scaling.original_context", s.original_context, max_context_length, ""));
  }
  return {};
}

// A layer tensor (blk.N.*) past n_layers means the file holds more layers than it declares: running
// the first n_layers of them would give garbage, not an error.
status check_layer_numbers(const model_weights& w, const source_name_fn& source_name, const key_name_fn& key_name) {
  for (const auto& [name, t] : w.tensors) {
    if (name.rfind("blk.", 0) != 0) continue;
    const size_t dot = name.find('.', 4);
    const std::string n = name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
    if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::stoll(n) < w.hp.n_layers) continue;
    const std::string src = source_name ? source_name(name) : name;
    return make_error(errc::shape_mismatch,
                      "model '" + w.path.string() + "': tensor '" + src + "' belongs to layer " + n + " but " +
                          (key_name ? key_name("n_layers") : std::string("n_layers")) + " is " +
                          std::to_string(w.hp.n_layers));
  }
  return {};
}

}  // namespace

status finish_weights(model_weights& w, const source_name_fn& source_name, const key_name_fn& key_name) {
  TROUPE_TRY(check_hparams(w, key_name));
  TROUPE_TRY(check_layer_numbers(w, source_name, key_name));
  const auto& hp = w.hp;
  const std::string where = "model '" + w.path.string() + "': ";
  auto named = [&](const std::string& name) {
    if (!source_name) return "'" + name + "'";
    const std::string src = source_name(name);
    return src == name ? "'" + name + "'" : "'" + name + "' ('" + src + "' in the file)";
  };
  // is_vector: norm weights and biases, which the model code reads as F32.
  auto expect = [&](const std::string& name, std::vector<int64_t> shape, bool is_vector) -> status {
    auto it = w.tensors.find(name);
    if (it == w.tensors.end()) return make_error(errc::not_found, where + "no tensor " + named(name));
    tensor_ref& t = it->second;
    if (t.shape != shape)
      return make_error(errc::shape_mismatch, where + "tensor " + named(name) + " has shape " +
                                                  shape_string(t.shape) + ", expected " + shape_string(shape));
    if (!is_vector || t.type == dtype::f32) return {};
    if (t.type != dtype::f16 && t.type != dtype::bf16)
      return make_error(errc::unsupported_type, where + "tensor " + named(name) + " has type " +
                                                    std::string(to_string(t.type)) + ", expected f32, f16 or bf16");
    // Small (dim floats) and read every step: worth owning as F32 rather than converting per use.
    const int64_t n = shape[0];
    std::shared_ptr<float[]> buf(new float[static_cast<size_t>(n)]);
    const auto* src = static_cast<const uint16_t*>(t.data);
    for (int64_t i = 0; i < n; ++i)
      buf[i] = t.type == dtype::f16 ? fp16_to_fp32(src[i]) : bf16_to_fp32(src[i]);
    t = tensor_ref{dtype::f32, std::move(shape), buf.get(), static_cast<size_t>(n) * sizeof(float)};
    w.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    return {};
  };
  const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  TROUPE_TRY(expect("token_embd.weight", {hp.n_vocab, hp.dim}, false));
  TROUPE_TRY(expect("output_norm.weight", {hp.dim}, true));
  if (!hp.tied_embeddings) TROUPE_TRY(expect("output.weight", {hp.n_vocab, hp.dim}, false));
  for (int64_t l = 0; l < hp.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    TROUPE_TRY(expect(p + "attn_norm.weight", {hp.dim}, true));
    TROUPE_TRY(expect(p + "attn_q.weight", {q_dim, hp.dim}, false));
    TROUPE_TRY(expect(p + "attn_k.weight", {kv_dim, hp.dim}, false));
    TROUPE_TRY(expect(p + "attn_v.weight", {kv_dim, hp.dim}, false));
    TROUPE_TRY(expect(p + "attn_output.weight", {hp.dim, q_dim}, false));
    if (hp.qkv_bias) {
      TROUPE_TRY(expect(p + "attn_q.bias", {q_dim}, true));
      TROUPE_TRY(expect(p + "attn_k.bias", {kv_dim}, true));
      TROUPE_TRY(expect(p + "attn_v.bias", {kv_dim}, true));
    }
    TROUPE_TRY(expect(p + "ffn_norm.weight", {hp.dim}, true));
    TROUPE_TRY(expect(p + "ffn_gate.weight", {hp.ffn_dim, hp.dim}, false));
    TROUPE_TRY(expect(p + "ffn_up.weight", {hp.ffn_dim, hp.dim}, false));
    TROUPE_TRY(expect(p + "ffn_down.weight", {hp.dim, hp.ffn_dim}, false));
  }
  if (hp.scaling.freq_factors) TROUPE_TRY(expect("rope_freqs.weight", {hp.head_dim / 2}, true));
  return {};
}

}  // namespace troupe::detail
