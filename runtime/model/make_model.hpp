#pragma once
// Random-weight models of real shapes, written as GGUF (llama architecture), for benchmarks and
// tests: speed does not depend on the weight values, and no real weights need to be stored.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.hpp"
#include "runtime/core/error.hpp"

namespace troupe {

/// The hyper-parameters of a named model shape.
struct model_shape {
  std::string name;
  int64_t dim = 0;
  int64_t ffn_dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t n_vocab = 0;
  int64_t context_length = 0;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
};

/// stories-260k (ffn 192 rather than the real 172, so quantized rows divide into blocks of 32),
/// llama-110m, tinyllama-1.1b, llama-8b.
const std::vector<model_shape>& known_model_shapes();
/// nullopt if no known shape has this name.
std::optional<model_shape> find_model_shape(std::string_view name);

struct make_model_options {
  std::string shape = "stories-260k";  ///< a name from known_model_shapes()
  dtype type = dtype::f16;             ///< matrices, token_embd and output; norms are always F32
  uint64_t seed = 0;                   ///< same seed, shape and type: the same bytes
  std::filesystem::path output;        ///< the .gguf file to write
  /// A GGUF whose tokenizer.* keys are copied; its vocabulary size replaces the shape's. Optional.
  std::filesystem::path tokenizer_from;
};

/// What make_random_model wrote.
struct make_model_result {
  std::filesystem::path path;
  model_shape shape;  ///< n_vocab as written (the tokenizer's when one was copied)
  int64_t parameter_count = 0;
  uint64_t file_bytes = 0;
};

/// Writes a random-weight llama GGUF, one chunk of rows at a time (a model larger than memory is fine).
/// Weights are uniform with standard deviation 0.02, norm weights 1, so activations stay finite.
expected<make_model_result> make_random_model(const make_model_options& options);

}  // namespace troupe
