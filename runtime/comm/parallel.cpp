#include "runtime/comm/parallel.hpp"

#include <algorithm>
#include <string>

namespace troupe {

std::string parallel_layout::to_string() const {
  return "tp rank " + std::to_string(tp_rank) + "/" + std::to_string(tp_size) + ", pp stage " +
         std::to_string(pp_stage) + "/" + std::to_string(pp_size);
}

std::pair<int64_t, int64_t> parallel_layout::stage_layers(int64_t n_layers, int pp_size, int stage) noexcept {
  const int64_t base = n_layers / pp_size, extra = n_layers % pp_size;
  const int64_t first = stage * base + std::min<int64_t>(stage, extra);
  return {first, base + (stage < extra ? 1 : 0)};
}

shard_shape parallel_layout::shape(const model_hparams& hp) const noexcept {
  const auto [first, count] = stage_layers(hp.n_layers, pp_size, pp_stage);
  return shard_shape{first, count, hp.n_heads / tp_size, hp.n_kv_heads / tp_size, hp.ffn_dim / tp_size};
}

status parallel_layout::validate() const {
  auto bad = [&](const std::string& msg) { return make_error(errc::invalid_argument, "parallel layout: " + msg); };
  if (tp_size < 1 || pp_size < 1)
    return bad("tp size " + std::to_string(tp_size) + " and pp size " + std::to_string(pp_size) + " must be at least 1");
  if (tp_rank < 0 || tp_rank >= tp_size)
    return bad("tp rank " + std::to_string(tp_rank) + " is outside [0, " + std::to_string(tp_size) + ")");
  if (pp_stage < 0 || pp_stage >= pp_size)
    return bad("pp stage " + std::to_string(pp_stage) + " is outside [0, " + std::to_string(pp_size) + ")");
  return {};
}

status parallel_layout::validate(const model_hparams& hp, int block_elems) const {
  TROUPE_TRY(validate());
  auto bad = [&](const std::string& msg) {
    return make_error(errc::invalid_argument, "parallel layout (" + to_string() + "): " + msg);
  };
  const std::string tp = "tp size " + std::to_string(tp_size);
  if (hp.n_heads % tp_size != 0)
    return bad(std::to_string(hp.n_heads) + " heads do not divide evenly over " + tp);
  if (hp.n_kv_heads % tp_size != 0)
    return bad(std::to_string(hp.n_kv_heads) + " kv heads do not divide evenly over " + tp);
  if (hp.ffn_dim % tp_size != 0)
    return bad("feed-forward width " + std::to_string(hp.ffn_dim) + " does not divide evenly over " + tp);
  // attn_output and ffn_down are split by columns: each rank's slice of a row must be whole blocks.
  const int64_t q_slice = hp.n_heads / tp_size * hp.head_dim, ffn_slice = hp.ffn_dim / tp_size;
  if (q_slice % block_elems != 0)
    return bad("each rank's " + std::to_string(q_slice) + " columns of attn_output would cut a quantized block of " +
               std::to_string(block_elems));
  if (ffn_slice % block_elems != 0)
    return bad("each rank's " + std::to_string(ffn_slice) + " columns of ffn_down would cut a quantized block of " +
               std::to_string(block_elems));
  if (pp_size > hp.n_layers)
    return bad("pp size " + std::to_string(pp_size) + " is more than the model's " + std::to_string(hp.n_layers) +
               " layers");
  return {};
}

status parallel_context::validate() const {
  TROUPE_TRY(layout.validate());
  auto check = [&](const char* name, const std::shared_ptr<communicator>& c, int size, int rank) -> status {
    const std::string what = std::string(name) + " communicator";
    if (size == 1) return {};
    if (!c)
      return make_error(errc::invalid_argument, "parallel layout (" + layout.to_string() + "): no " + what +
                                                    " for a " + name + " size of " + std::to_string(size));
    if (c->world_size() != size || c->rank() != rank)
      return make_error(errc::invalid_argument, "parallel layout (" + layout.to_string() + "): the " + what +
                                                    " is rank " + std::to_string(c->rank()) + " of " +
                                                    std::to_string(c->world_size()) + ", not " + std::to_string(rank) +
                                                    " of " + std::to_string(size));
    return {};
  };
  TROUPE_TRY(check("tp", tp, layout.tp_size, layout.tp_rank));
  TROUPE_TRY(check("pp", pp, layout.pp_size, layout.pp_stage));
  return {};
}

}  // namespace troupe
