#pragma once
// An in-process engine: one model, its tokenizer, a paged KV pool and its block allocator. Used by
// `troupe generate` and `troupe bench-engine`; the serving scheduler drives the same pieces.

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/kv/kv_pool.hpp"
#include "runtime/model/llama_model.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// Options for loading an engine.
struct engine_options {
  std::string model_path;         ///< .gguf, Hugging Face directory, or llama2.c .bin
  std::string tokenizer_path;     ///< overrides the tokenizer found with the model ("" = automatic)
  model_options model;            ///< threads
  kv_pool_config kv;              ///< KV cache size (blocks or bytes) and block size
  int64_t prefill_chunk = 512;    ///< longest prompt chunk run in one forward call
  /// When kv.n_blocks is 0, the pool holds this many full contexts at most (within kv.max_bytes).
  int64_t kv_full_contexts = 1;
};

/// Why a generation ended.
enum class stop_reason { length, stop, context, cancelled };
const char* to_string(stop_reason r) noexcept;

struct generation_result {
  std::vector<int32_t> tokens;     ///< generated ids (the stop token excluded)
  stop_reason reason = stop_reason::length;
};

class engine {
 public:
  static expected<std::unique_ptr<engine>> load(const engine_options& opts);

  llama_model& model() noexcept { return *model_; }
  const tokenizer& tok() const noexcept { return *tok_; }
  /// The tokenizer as a shared handle, for components that outlive a borrow (the gateway).
  std::shared_ptr<const tokenizer> shared_tokenizer() const noexcept { return tok_; }
  kv_pool& kv() noexcept { return *kv_; }
  block_allocator& blocks() noexcept { return *blocks_; }
  const engine_options& options() const noexcept { return opts_; }

  /// Generates up to max_tokens after the prompt ids for one sequence. on_token is called with each
  /// token as soon as it is sampled; returning false stops (stop_reason::cancelled).
  expected<generation_result> generate(std::span<const int32_t> prompt, const sampling_params& params,
                                       int max_tokens,
                                       const std::function<bool(const sample_result&)>& on_token = {});

  /// Runs the prompt through the model for a sequence whose table is `table`, chunked, and returns
  /// the logits of its last token.
  status prefill(std::span<const int32_t> prompt, block_table& table, std::vector<float>& logits);

 private:
  engine() = default;
  engine_options opts_;
  std::unique_ptr<llama_model> model_;
  std::shared_ptr<const tokenizer> tok_;
  std::unique_ptr<kv_pool> kv_;
  std::unique_ptr<block_allocator> blocks_;
};

}  // namespace troupe
