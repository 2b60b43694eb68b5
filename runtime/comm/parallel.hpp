#pragma once
// Where a shard sits in a model replica of tp_size x pp_size shards, and the communicators it talks
// through. Tensor parallelism (Megatron style) splits every layer's heads and feed-forward rows over
// the tp ranks of a stage, which all-reduce the attention output and the feed-forward output;
// pipeline parallelism splits the layers into contiguous stages, each passing its activations to
// the next. The same model code runs every shard: a replica of one shard is the layout {1, 0, 1, 0}.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "runtime/comm/communicator.hpp"
#include "runtime/core/error.hpp"
#include "runtime/model/weights.hpp"

namespace troupe {

/// The part of a model one shard holds: a range of layers and, in each, a slice of the heads and of
/// the feed-forward rows.
struct shard_shape {
  int64_t first_layer = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;     ///< heads [tp_rank * n_heads, (tp_rank + 1) * n_heads) of the model
  int64_t n_kv_heads = 0;  ///< kv heads, likewise
  int64_t ffn_dim = 0;     ///< feed-forward rows, likewise
};

/// A shard's position in its replica.
struct parallel_layout {
  int tp_size = 1;
  int tp_rank = 0;   ///< in [0, tp_size)
  int pp_size = 1;
  int pp_stage = 0;  ///< in [0, pp_size)

  /// Whether this shard turns the last stage's activations into logits and samples: tp rank 0 of the
  /// last stage (every tp rank there holds the same activations after the all-reduce).
  bool samples() const noexcept { return tp_rank == 0 && pp_stage == pp_size - 1; }
  bool first_stage() const noexcept { return pp_stage == 0; }
  bool last_stage() const noexcept { return pp_stage == pp_size - 1; }
  bool single() const noexcept { return tp_size == 1 && pp_size == 1; }
  /// "tp rank R/T, pp stage S/P", for messages.
  std::string to_string() const;

  /// Layers [first, first + count) of stage `stage` for a model of n_layers: contiguous ranges as even
  /// as possible, earlier stages taking the extra layers (5 over 2 stages: [0, 3) and [3, 5)).
  static std::pair<int64_t, int64_t> stage_layers(int64_t n_layers, int pp_size, int stage) noexcept;
  /// This shard's part of a model with these hyper-parameters (the layout assumed valid for it).
  shard_shape shape(const model_hparams& hp) const noexcept;

  /// Sizes positive and ranks within them.
  status validate() const;
  /// Also that the model splits evenly: heads and kv heads divisible by tp_size, the feed-forward
  /// rows too, every stage with a layer, and the column slices of the row-parallel matrices (this
  /// rank's heads of attn_output, its feed-forward slice of ffn_down) whole blocks of `block_elems`
  /// elements (the quantized block of those matrices; 1 for float types).
  status validate(const model_hparams& hp, int block_elems) const;
};

/// A shard's layout with its communicators. tp: the tp_size ranks of this stage, rank tp_rank. pp: the
/// pp_size stages' shards of the same tp rank, rank pp_stage (stage s's rank r sends its activations
/// to stage s+1's rank r). Each is null when its size is 1.
struct parallel_context {
  parallel_layout layout;
  std::shared_ptr<communicator> tp;
  std::shared_ptr<communicator> pp;

  /// layout.validate() plus a communicator where a size is above 1, whose world size and rank match
  /// the layout.
  status validate() const;
};

}  // namespace troupe
