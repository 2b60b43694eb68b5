// Validation of a loaded model against its hyper-parameters, shared by every format.

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

status check_hparams(const model_weights& w) {
  const auto& hp = w.hp;
  const std::string where = "model '" + w.path.string() + "': ";
  auto positive = [&](const char* what, int64_t v) -> status {
    if (v <= 0) return make_error(errc::bad_format, where + what + " is " + std::to_string(v) + ", must be positive");
    return {};
  };
  TROUPE_TRY(positive("n_vocab", hp.n_vocab));
  TROUPE_TRY(positive("dim", hp.dim));
  TROUPE_TRY(positive("n_layers", hp.n_layers));
  TROUPE_TRY(positive("n_heads", hp.n_heads));
  TROUPE_TRY(positive("n_kv_heads", hp.n_kv_heads));
  TROUPE_TRY(positive("head_dim", hp.head_dim));
  TROUPE_TRY(positive("ffn_dim", hp.ffn_dim));
  TROUPE_TRY(positive("context_length", hp.context_length));
  if (hp.n_heads % hp.n_kv_heads != 0)
    return make_error(errc::bad_format, where + std::to_string(hp.n_heads) + " heads do not divide into " +
                                            std::to_string(hp.n_kv_heads) + " kv heads");
  if (hp.head_dim % 2 != 0)
    return make_error(errc::bad_format, where + "head_dim " + std::to_string(hp.head_dim) + " is odd (RoPE rotates pairs)");
  if (!(hp.norm_eps > 0.0f) || !(hp.rope_theta > 0.0f))
    return make_error(errc::bad_format, where + "norm_eps and rope_theta must be positive");
  return {};
}

}  // namespace

status finish_weights(model_weights& w, const source_name_fn& source_name) {
  TROUPE_TRY(check_hparams(w));
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
