#pragma once
// What a scheduler sends its shards each iteration, and what comes back. Plain data: the actors
// carry it, the policy classes produce and consume it. Sampling happens on the shard (the last
// pipeline stage), so only token ids and log-probabilities come back, never logits.

#include <cstdint>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/sampling/sampler.hpp"

namespace troupe {

using request_id = uint64_t;

/// One sequence's part of an iteration.
struct seq_plan {
  request_id id = 0;
  std::vector<int32_t> tokens;        ///< tokens to run this step (a prompt chunk or one decode token)
  int64_t start_pos = 0;              ///< position of tokens[0]
  std::vector<int32_t> block_table;   ///< the sequence's whole block table, covering start_pos + tokens.size()
  bool sample = false;                ///< sample a token after this step (last prompt chunk, or a decode)
  bool new_sequence = false;          ///< first step of this sequence on the shard: create its sampler
  sampling_params params;             ///< with new_sequence: the sampling settings
  std::vector<int32_t> prompt;        ///< with new_sequence: the prompt ids (for repetition penalties)
};

/// Copy-on-write: copy KV block src into dst (all layers) before the step runs.
struct block_copy {
  int32_t src = -1;
  int32_t dst = -1;
};

/// One iteration for one replica's shards.
struct step_plan {
  uint64_t step = 0;
  std::vector<block_copy> copies;        ///< done before the forward pass
  std::vector<seq_plan> seqs;
  std::vector<request_id> released;      ///< sequences that ended: the shard drops their sampler state
};

/// A sampled token for one sequence.
struct seq_output {
  request_id id = 0;
  sample_result sample;
};

/// What the shard (last stage) returns for a step.
struct step_result {
  uint64_t step = 0;
  std::vector<seq_output> outputs;   ///< one per seq_plan with sample = true, in plan order
  std::string error;                 ///< non-empty: the step failed (the message names why)
};

}  // namespace troupe
