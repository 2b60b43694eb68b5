#pragma once
// The work of one shard, without any actor code: it owns a model and its KV pool, keeps one
// sampler per live sequence, and turns a step_plan into a step_result (block copies, one forward
// pass over the whole iteration batch, sampling). The shard actor only carries plans and results.
//
// A plan is checked whole before anything changes: an invalid plan (unknown sequence, token or
// block id out of range, bad sampling settings, ...) leaves the KV memory and the samplers as they
// were and comes back as a step_result with `error` set. Only `released` applies even then: those
// sequences have ended whatever became of this step.
//
// A shard of a tensor/pipeline-parallel replica (engine_options::model.parallel) gets the same plans
// as its peers and runs its part of the forward pass with them. Every shard keeps the set of live
// sequences and checks a plan the same way, from the plan and that set alone, so all of a replica's
// shards accept or refuse it together; only the sampling shard (parallel_layout::samples) holds
// samplers and returns outputs, the others return empty outputs (or the error).

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/serving/step_plan.hpp"

namespace troupe {

/// What a scheduler needs to know about a shard to plan for it.
struct shard_info {
  int32_t n_vocab = 0;
  int32_t n_layers = 0;
  int64_t context_length = 0;
  int64_t n_blocks = 0;     ///< KV blocks on this shard: ids [0, n_blocks)
  int32_t block_size = 0;   ///< tokens per KV block
  bool samples = true;      ///< its step results carry the sampled tokens (one shard of a tp x pp replica)
};

class shard_runner {
 public:
  /// Loads the model and sizes the KV pool as engine::load does.
  static expected<std::unique_ptr<shard_runner>> load(const engine_options& opts);
  /// Serves with an engine already loaded; its block_allocator is not used (the scheduler's block
  /// manager hands out the block ids).
  explicit shard_runner(std::unique_ptr<engine> e);

  /// Runs one iteration. Never throws: every failure is a step_result with `error` set.
  step_result run(const step_plan& plan);

  shard_info info() const noexcept { return info_; }
  /// Live sequences (created with new_sequence, not yet released).
  size_t n_sequences() const noexcept { return samplers_.size(); }

 private:
  /// Checks the plan against the model, the pool and the live sequences; names the first problem.
  status validate(const step_plan& plan) const;
  step_result run_checked(const step_plan& plan);

  std::unique_ptr<engine> engine_;
  shard_info info_;
  /// The live sequences, with their samplers on the sampling shard (null on the others).
  std::unordered_map<request_id, std::unique_ptr<sampler>> samplers_;
  std::vector<float> logits_;   ///< n_logits x n_vocab of the last step, reused
};

}  // namespace troupe
