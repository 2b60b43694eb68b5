#include "runtime/config/model_header.hpp"

#include <algorithm>
#include <string_view>

#include "kernels/dtype.hpp"
#include "runtime/comm/parallel.hpp"
#include "runtime/config/yaml_read.hpp"
#include "runtime/hub/pull.hpp"
#include "runtime/kv/kv_pool.hpp"

namespace troupe {
namespace {

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

}  // namespace

expected<model_header> read_model_header(const model_config& m, const std::string& origin, const std::string& where) {
  const std::string model = "model '" + m.name + "': ";
  auto path = resolve_model_path(m.path);
  if (!path) return config::key_error(origin, where + "path", model + path.error().message());
  auto weights = load_model_weights(*path);
  if (!weights) return config::key_error(origin, where + "path", model + weights.error().message());
  model_header h{weights->hp, 1};
  // The column slices of attn_output and ffn_down must be whole quantized blocks on every tp rank.
  for (const auto& [name, t] : weights->tensors)
    if (ends_with(name, "attn_output.weight") || ends_with(name, "ffn_down.weight"))
      h.block_elems = std::max(h.block_elems, block_elems(t.type));
  return h;
}

uint64_t kv_block_bytes(const model_hparams& hp, int tp, int pp) {
  const int64_t layers = parallel_layout::stage_layers(hp.n_layers, pp, 0).second;
  return kv_pool::bytes_per_block(layers, hp.n_kv_heads / tp, hp.head_dim, kv_pool_config{}.block_size);
}

}  // namespace troupe
