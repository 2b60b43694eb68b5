#pragma once
// A model as the loaders deliver it: hyper-parameters plus named weight tensors (memory-mapped where
// the file's layout allows), whatever the file format. Tensor names are GGUF's canonical names:
//   token_embd.weight, output_norm.weight, output.weight (absent when embeddings are tied),
//   blk.N.attn_norm.weight, blk.N.attn_q.weight, blk.N.attn_k.weight, blk.N.attn_v.weight,
//   blk.N.attn_q.bias / attn_k.bias / attn_v.bias (Qwen2), blk.N.attn_output.weight,
//   blk.N.ffn_norm.weight, blk.N.ffn_gate.weight, blk.N.ffn_up.weight, blk.N.ffn_down.weight
// Matrices are {out_features, in_features}, numpy order.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/dtype.hpp"
#include "runtime/core/error.hpp"

namespace troupe {

namespace format {
class gguf_file;
}

/// Llama-3 style frequency-dependent RoPE scaling ("rope_type": "llama3").
struct rope_scaling {
  bool llama3 = false;
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_context = 8192;
  /// GGUF files of Llama 3.1+ carry the scaling as a tensor instead: rope_freqs.weight holds
  /// head_dim / 2 divisors of the inverse frequencies (inv_freq[i] / factors[i]), kept in tensors.
  bool freq_factors = false;
};

/// The longest context a model file may declare: RoPE turns a position into a float32 angle, and
/// float32 holds every integer only up to 2^24 (16.7M tokens; the longest real context, Llama 4
/// Scout's 10M, fits). Nothing is sized by the context alone (the KV pool has its own byte budget),
/// but a value past this is a broken or hostile file, not a model.
constexpr int64_t max_context_length = int64_t{1} << 24;

/// Architecture hyper-parameters, read from the model file.
struct model_hparams {
  std::string architecture;   ///< "llama" (also Mistral, SmolLM), "qwen2"
  int64_t n_vocab = 0;
  int64_t dim = 0;            ///< embedding width
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;       ///< usually dim / n_heads
  int64_t ffn_dim = 0;
  int64_t context_length = 2048;  ///< 1 to max_context_length
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  cpu::rope_style rope = cpu::rope_style::interleaved;
  rope_scaling scaling;
  bool tied_embeddings = false;  ///< output projection reuses token_embd.weight
  bool qkv_bias = false;         ///< Qwen2: biases on the Q, K and V projections
};

/// A tensor in memory: numpy-order shape, element type, bytes.
struct tensor_ref {
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

/// What a loader produces.
struct model_weights {
  std::string format;                    ///< "gguf", "safetensors", "llama2c"
  std::filesystem::path path;            ///< the file or directory given
  model_hparams hp;
  std::map<std::string, tensor_ref, std::less<>> tensors;  ///< canonical names
  /// The parsed GGUF file when the format is GGUF (holds tokenizer metadata and chat template).
  std::shared_ptr<const format::gguf_file> gguf;
  /// The tokenizer file for other formats: tokenizer.json / tokenizer.model (HF) or tokenizer.bin (llama2.c).
  std::filesystem::path tokenizer_path;
  /// Memory mappings and owned buffers the tensor pointers point into.
  std::vector<std::shared_ptr<const void>> storage;

  /// nullptr if absent.
  const tensor_ref* find(std::string_view name) const;
  /// Total bytes of all tensors.
  size_t total_bytes() const;
  /// Total number of elements of all tensors.
  int64_t parameter_count() const;
};

/// Loads a model: a .gguf file, a Hugging Face directory (config.json + *.safetensors, sharded with
/// model.safetensors.index.json), or a llama2.c checkpoint (.bin; tokenizer.bin / tok*.bin beside it).
/// Checks every tensor's presence, type and shape against the hyper-parameters.
expected<model_weights> load_model_weights(const std::filesystem::path& path);

}  // namespace troupe
