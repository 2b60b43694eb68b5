// The checks of a cluster config against its model files (cluster_config.hpp): a tp that does not
// divide the heads would otherwise pass `--check`, start, and leave the replica's shards unable to
// load while the gateway answered "still loading".
#include <algorithm>

#include "cluster/cluster_config.hpp"
#include "runtime/comm/parallel.hpp"
#include "runtime/config/model_header.hpp"
#include "runtime/config/yaml_read.hpp"

namespace troupe::cluster {
namespace {

/// Whether `node` runs a shard or a scheduler of m.
bool runs_part_of(const cluster_model& m, const std::string& node) {
  for (const auto& r : m.replicas)
    if (r.scheduler == node || std::find(r.shards.begin(), r.shards.end(), node) != r.shards.end()) return true;
  return false;
}

}  // namespace

status check_model_split(const cluster_config& cfg, size_t index, const model_hparams& hp, int block_elems) {
  const cluster_model& m = cfg.models[index];
  const std::string where = "models[" + std::to_string(index) + "].";
  const std::string model = "model '" + m.model.name + "'";
  if (hp.n_heads % m.tp != 0 || hp.n_kv_heads % m.tp != 0)
    return config::key_error(cfg.origin, where + "tp", model + " has " + std::to_string(hp.n_heads) + " attention heads and " +
                                                          std::to_string(hp.n_kv_heads) + " KV heads; tp " +
                                                          std::to_string(m.tp) + " must divide both");
  if (m.pp > hp.n_layers)
    return config::key_error(cfg.origin, where + "pp", model + " has " + std::to_string(hp.n_layers) + " layers; pp " +
                                                          std::to_string(m.pp) + " must be at most that");
  // Every rank checks the same divisions; rank 0 of stage 0 stands for all.
  const parallel_layout layout{m.tp, 0, m.pp, 0};
  if (auto st = layout.validate(hp, block_elems); !st)
    return config::key_error(cfg.origin, where + (m.tp > 1 ? "tp" : "pp"), model + ": " + st.error().message());
  return {};
}

status check_model_files(const cluster_config& cfg, const std::string& node, uint64_t physical_bytes) {
  const node_config* me = cfg.find_node(node);
  const bool gateway = me && me->http_port > 0;
  for (size_t i = 0; i < cfg.models.size(); ++i) {
    const cluster_model& m = cfg.models[i];
    if (!gateway && !runs_part_of(m, node)) continue;
    const std::string where = "models[" + std::to_string(i) + "].";
    auto header = read_model_header(m.model, cfg.origin, where);
    TROUPE_TRY(header);
    TROUPE_TRY(check_model_split(cfg, i, header->hp, header->block_elems));
    const bool shard_here = std::any_of(m.replicas.begin(), m.replicas.end(), [&](const replica_placement& r) {
      return std::find(r.shards.begin(), r.shards.end(), node) != r.shards.end();
    });
    if (shard_here) TROUPE_TRY(check_kv_memory(m.model, cfg.origin, where, physical_bytes, kv_block_bytes(header->hp, m.tp, m.pp)));
  }
  return {};
}

}  // namespace troupe::cluster
