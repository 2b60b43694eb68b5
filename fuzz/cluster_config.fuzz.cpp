// The cluster YAML every `troupe node` reads (cluster/cluster_config.cpp) from arbitrary text; an
// accepted config is then asked for every node's shards and data ports, as a node does at start.
#include "cluster/cluster_config.hpp"
#include "fuzz/fuzz_support.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = cluster::parse_cluster_config(text, "fuzz.yaml", fuzz::scratch_dir());
  if (!cfg) return 0;
  for (const auto& node : cfg->nodes)
    for (const auto& slot : cluster::shards_on(*cfg, node.name)) (void)cluster::shard_data_ports(*cfg, slot);
  return 0;
}
