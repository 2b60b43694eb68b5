#pragma once
// An in-process engine: one model on its device (CPU or a CUDA GPU) with its paged KV pool, its
// tokenizer and a block allocator. Used by `troupe generate` and `troupe bench-engine`; the serving
// shard drives the same pieces. Callers go through the engine's forward/copy_block and never see
// which device runs the model.

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/kv/kv_pool.hpp"
#include "runtime/model/model_runner.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// Options for loading an engine.
struct engine_options {
  std::string model_path;         ///< .gguf, Hugging Face directory, llama2.c .bin, or hf:REPO/FILE (pulled into the cache)
  bool pull_progress = false;     ///< a progress bar on stderr while an hf: model downloads
  std::string tokenizer_path;     ///< overrides the tokenizer found with the model ("" = automatic)
  model_options model;            ///< threads, repacking, and the shard's place in a parallel replica (CPU)
  std::string device = "cpu";     ///< "cpu", or "cuda:N" ("cuda" = cuda:0) for a GPU
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

/// The tokenizer of a model: the one in its files, or the file at tokenizer_path when given. A
/// tokenizer with more tokens than the model's vocabulary is shape_mismatch.
expected<std::shared_ptr<const tokenizer>> load_model_tokenizer(const model_weights& weights,
                                                                const std::string& tokenizer_path);

class engine {
 public:
  static expected<std::unique_ptr<engine>> load(const engine_options& opts);

  const tokenizer& tok() const noexcept { return *tok_; }
  /// The tokenizer as a shared handle, for components that outlive a borrow (the gateway).
  std::shared_ptr<const tokenizer> shared_tokenizer() const noexcept { return tok_; }
  block_allocator& blocks() noexcept { return *blocks_; }
  const engine_options& options() const noexcept { return opts_; }

  /// Runs one iteration batch (model_runner::forward): K/V into the batch's blocks, and the logits of
  /// each step with want_logits (n_logits x n_vocab, in step order).
  status forward(const forward_batch& batch, std::span<float> logits) { return runner_->forward(batch, logits); }
  /// Copies KV block src into block dst, every layer (copy-on-write of a forked sequence).
  status copy_block(int32_t src, int32_t dst) { return runner_->copy_block(src, dst); }
  const model_hparams& hparams() const noexcept { return runner_->hparams(); }
  const model_weights& weights() const noexcept { return runner_->weights(); }
  size_t weight_bytes_per_token() const noexcept { return runner_->weight_bytes_per_token(); }
  int block_size() const noexcept { return runner_->block_size(); }
  int64_t n_blocks() const noexcept { return runner_->n_blocks(); }
  /// "cpu" or "cuda:N (device name)".
  std::string device_name() const { return runner_->device_name(); }
  /// CPU threads of the kernels (0 on a GPU).
  int threads() const noexcept { return runner_->threads(); }

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
  std::unique_ptr<model_runner> runner_;
  std::shared_ptr<const tokenizer> tok_;
  std::unique_ptr<block_allocator> blocks_;
};

}  // namespace troupe
