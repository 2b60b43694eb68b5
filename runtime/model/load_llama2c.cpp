// llama2.c checkpoints: per-layer slices of the stacked float32 arrays, pointing into the mapping.

#include "runtime/format/llama2c.hpp"
#include "runtime/model/load_common.hpp"

namespace troupe::detail {

expected<model_weights> load_llama2c_weights(const std::filesystem::path& path) {
  auto opened = format::llama2c_checkpoint::open(path);
  if (!opened) return unexpected{opened.error()};
  const auto& ck = **opened;
  const auto& c = ck.config();
  model_weights w;
  w.format = "llama2c";
  w.path = path;
  w.storage.push_back(ck.mapping());
  w.tokenizer_path = format::find_llama2c_tokenizer(path);

  auto& hp = w.hp;
  hp.architecture = "llama";
  hp.n_vocab = c.vocab_size;
  hp.dim = c.dim;
  hp.n_layers = c.n_layers;
  hp.n_heads = c.n_heads;
  hp.n_kv_heads = c.n_kv_heads;
  hp.head_dim = c.dim / c.n_heads;
  hp.ffn_dim = c.hidden_dim;
  hp.context_length = c.seq_len;
  // llama2.c hard-codes these in its run.c rather than storing them.
  hp.norm_eps = 1e-5f;
  hp.rope_theta = 10000.0f;
  hp.rope = cpu::rope_style::interleaved;
  hp.tied_embeddings = c.shared_classifier;

  auto whole = [&](const char* array, const std::string& name) {
    const auto* a = ck.array(array);
    if (a) w.tensors[name] = tensor_ref{dtype::f32, a->shape, a->data, a->nbytes};
  };
  // Layer l of a stacked array [L][rows...]: the same shape without the first dimension.
  auto layer = [&](const char* array, int64_t l, const std::string& name) {
    const auto* a = ck.array(array);
    if (!a) return;
    std::vector<int64_t> shape(a->shape.begin() + 1, a->shape.end());
    const size_t per_layer = a->nbytes / static_cast<size_t>(a->shape[0]);
    w.tensors[name] = tensor_ref{dtype::f32, std::move(shape),
                                 reinterpret_cast<const uint8_t*>(a->data) + per_layer * static_cast<size_t>(l),
                                 per_layer};
  };
  whole("token_embedding_table", "token_embd.weight");
  whole("rms_final_weight", "output_norm.weight");
  if (!c.shared_classifier) whole("wcls", "output.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer("rms_att_weight", l, p + "attn_norm.weight");
    layer("wq", l, p + "attn_q.weight");
    layer("wk", l, p + "attn_k.weight");
    layer("wv", l, p + "attn_v.weight");
    layer("wo", l, p + "attn_output.weight");
    layer("rms_ffn_weight", l, p + "ffn_norm.weight");
    layer("w1", l, p + "ffn_gate.weight");
    layer("w2", l, p + "ffn_down.weight");
    layer("w3", l, p + "ffn_up.weight");
  }
  TROUPE_TRY(finish_weights(w));
  return w;
}

}  // namespace troupe::detail
