#pragma once
// llama2.c checkpoints (the legacy "version 0" .bin of Karpathy's llama2.c): a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means
// the classifier is stored separately), then float32 arrays back to back. Memory-mapped, no copies.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe::format {

/// The header of a llama2.c checkpoint.
struct llama2c_config {
  int64_t dim = 0;
  int64_t hidden_dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t vocab_size = 0;  ///< always positive here
  int64_t seq_len = 0;
  bool shared_classifier = true;  ///< false when the file's vocab_size was negative (wcls follows)
};

/// One float32 array of the checkpoint, named as in llama2.c (token_embedding_table, rms_att_weight,
/// wq, wk, wv, wo, rms_ffn_weight, w1, w2, w3, rms_final_weight, wcls); per-layer arrays have the
/// layer as their first dimension. The RoPE tables (freq_cis_real/imag) are skipped.
struct llama2c_array {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  size_t nbytes = 0;
};

class llama2c_checkpoint {
 public:
  /// Maps and checks a checkpoint: plausible header, file size exactly what the header implies
  /// (truncated when shorter), versioned exports ("ak42" magic) rejected as unsupported.
  static expected<std::shared_ptr<const llama2c_checkpoint>> open(const std::filesystem::path& path);
  /// Parses checkpoint bytes already in memory (what open() does after mapping; a fuzzer's entry
  /// point). owner keeps [data, data + size) alive as long as the result; name stands for the file in errors.
  static expected<std::shared_ptr<const llama2c_checkpoint>> parse(std::shared_ptr<const void> owner,
                                                                   const uint8_t* data, size_t size,
                                                                   const std::filesystem::path& name);

  const llama2c_config& config() const noexcept { return config_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  const std::vector<llama2c_array>& arrays() const noexcept { return arrays_; }
  /// nullptr if absent.
  const llama2c_array* array(std::string_view name) const;
  /// The mapping the arrays point into.
  const std::shared_ptr<const void>& mapping() const noexcept { return mapping_; }

 private:
  llama2c_checkpoint() = default;
  llama2c_config config_;
  std::filesystem::path path_;
  std::vector<llama2c_array> arrays_;
  std::shared_ptr<const void> mapping_;
};

/// The llama2.c tokenizer beside a checkpoint: tokenizer.bin, else the first tok*.bin by name;
/// empty if neither exists.
std::filesystem::path find_llama2c_tokenizer(const std::filesystem::path& checkpoint);

}  // namespace troupe::format
