#pragma once
// Shared by the per-format loaders behind load_model_weights (not a public interface).

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/model/weights.hpp"

/// Assigns the value of an expected-returning expression to lhs, or returns its error.
#define TROUPE_ASSIGN(lhs, expr)                          \
  do {                                                    \
    auto troupe_v_ = (expr);                              \
    if (!troupe_v_) return unexpected{troupe_v_.error()}; \
    lhs = *troupe_v_;                                     \
  } while (0)

namespace troupe::detail {

expected<model_weights> load_gguf_weights(const std::filesystem::path& path);
/// dir holds config.json and the safetensors checkpoint.
expected<model_weights> load_hf_weights(const std::filesystem::path& dir);
expected<model_weights> load_llama2c_weights(const std::filesystem::path& path);

/// Maps a canonical tensor name to the name the file uses, for error messages (identity if unset).
using source_name_fn = std::function<std::string(const std::string&)>;

/// Maps a model_hparams field ("context_length", "scaling.factor") to the key the file gives it
/// in, for error messages (the field name if unset).
using key_name_fn = std::function<std::string(const std::string&)>;

/// Checks the hyper-parameters (each within its bounds, see weights_check.cpp) and that every tensor
/// they imply is present with the right shape and no layer tensor lies past n_layers; converts
/// F16/BF16 norm weights and biases into owned F32 buffers (kept in w.storage).
status finish_weights(model_weights& w, const source_name_fn& source_name = {}, const key_name_fn& key_name = {});

/// "[2, 3]"
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace troupe::detail
