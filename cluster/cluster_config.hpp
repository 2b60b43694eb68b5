#pragma once
// The cluster config that every `troupe node --config FILE --name NODE` of a cluster reads: the
// nodes (where each listens), the models and, for every replica of a model, which node runs its
// scheduler (with its KV block manager) and which nodes run its tp x pp shards. Every node reads the
// same file and derives the same placement from it; nodes refuse peers whose file differs (the
// handshake compares digests). deploy/cluster/*.yaml are commented examples.
//
//   cluster: demo                         # a name, for logs and the handshake
//   heartbeat: {interval_ms: 500, timeout_ms: 1500}
//   routing: {strategy: chwbl, ...}       # as in `troupe serve`'s config
//   nodes:
//     - {name: head, host: 127.0.0.1, port: 7400, http_port: 8000}   # http_port: runs a gateway
//     - {name: w1, host: 127.0.0.1, port: 7401, data_port: 7600, threads: 1}
//   models:
//     - name: tales
//       path: stories260K/stories260K.gguf # relative: under $TROUPE_MODEL_DIR, else the file's directory
//       tp: 2                              # divides the attention and KV heads (check_model_files)
//       pp: 1                              # at most the layers
//       replicas:
//         - {scheduler: head, shards: [w1, w2]}   # shards: tp x pp node names, stage by stage
//         - {node: w1}                            # scheduler and every shard on w1
//       # and every per-model key of `troupe serve` (threads, kv_cache_mb, max_num_seqs, ...)
//   tls: {dir: certs}                     # mutual TLS between nodes (cluster/tls.hpp); see tls_config

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/config/serve_config.hpp"
#include "runtime/core/error.hpp"

namespace troupe {
struct model_hparams;
}

namespace troupe::cluster {

/// One process of the cluster.
struct node_config {
  std::string name;
  std::string host = "127.0.0.1";  ///< where it listens (control plane and data plane)
  int port = 0;                    ///< CAF middleman port of its node actor (required)
  int http_port = 0;               ///< > 0: this node runs a gateway and router, serving HTTP here
  std::string http_host;           ///< address the gateway binds ("": host)
  int data_port = 0;               ///< first UCX port of its shards (each shard takes two); 0: port + 100
  int threads = 0;                 ///< CPU threads per shard on this node unless the model says; 0: all cores
  std::vector<std::string> devices{"cpu"};  ///< devices its shards may use
};

/// Where one replica runs.
struct replica_placement {
  std::string scheduler;            ///< node of the scheduler and KV block manager
  std::vector<std::string> shards;  ///< tp x pp node names: stage 0 ranks 0..tp-1, then stage 1, ...
};

/// tp and pp are at most this (the model file bounds them further: check_model_files).
inline constexpr int max_parallel = 256;

struct cluster_model {
  model_config model;               ///< path, threads, KV and scheduler limits (`replicas` = placements' count)
  int tp = 1;
  int pp = 1;
  std::vector<replica_placement> replicas;
};

struct heartbeat_config {
  int interval_ms = 500;  ///< a gateway asks each replica's scheduler for its stats this often
  int timeout_ms = 1500;  ///< no answer for this long: the replica is taken out of routing
};

/// Mutual TLS on the control port: each node presents its certificate and key, and accepts only
/// peers whose certificate the cluster CA signed. `dir: D` is short for ca: D/ca.pem,
/// cert: D/{node}.pem, key: D/{node}.key (what `troupe certs --out D` writes); ca, cert and key
/// override it. {node} is the node's name; relative paths are relative to the config file.
struct tls_config {
  bool enabled = false;  ///< a `tls` section is present
  std::string ca;        ///< the cluster CA's certificate (PEM)
  std::string cert;      ///< a node's certificate (PEM), {node} replaced
  std::string key;       ///< a node's private key (unencrypted PEM; keep it 0600)
  int handshake_timeout_ms = 10000;  ///< an accepted connection not through its handshake by then is closed
};

/// The three files one node uses.
struct tls_files {
  std::filesystem::path ca, cert, key;
};

/// Whether a node name can name its TLS files: letters, digits, '.', '_', '-'; not ".", ".." or "ca".
bool is_file_safe_name(const std::string& name);

/// Whether host is a loopback address (127.0.0.0/8, ::1 or localhost).
bool is_loopback_host(const std::string& host);

struct cluster_config {
  std::string name = "troupe";
  std::vector<node_config> nodes;
  std::vector<cluster_model> models;
  routing_config routing;
  heartbeat_config heartbeat;
  tls_config tls;      ///< required unless every node is on loopback
  std::string digest;  ///< hash of the file's text: peers with another digest are refused
  std::string origin;  ///< the file, for errors

  /// The TLS files of `node` (tls.enabled only).
  tls_files tls_files_of(const std::string& node) const;

  const node_config* find_node(const std::string& name) const;
  /// "a, b, c": every node name, for errors.
  std::string node_names() const;
};

/// The address of one shard: model, replica, and index k = stage * tp + rank.
struct shard_slot {
  const cluster_model* model = nullptr;
  int replica = 0;
  int index = 0;
  int stage() const { return index / model->tp; }
  int rank() const { return index % model->tp; }
  std::string node() const { return model->replicas[static_cast<size_t>(replica)].shards[static_cast<size_t>(index)]; }
  /// "tales/0/shard1": the key its node registers it under.
  std::string key() const;
};

/// "tales/0": a replica's id in the router and the key of its scheduler.
std::string replica_key(const std::string& model, int replica);

/// The two UCX ports of a shard: its tensor-parallel group's and its pipeline group's. Shards placed on
/// one node are numbered in config order (models, replicas, shards) and take data_port + 2k, + 2k + 1.
struct data_ports {
  int tp = 0;
  int pp = 0;
};
data_ports shard_data_ports(const cluster_config& cfg, const shard_slot& slot);

/// Every shard the config places on `node`, in config order.
std::vector<shard_slot> shards_on(const cluster_config& cfg, const std::string& node);

/// Parses YAML text; origin names the source in errors. Relative model paths resolve against
/// model_dir, relative TLS paths against config_dir. The digest hashes yaml_text.
expected<cluster_config> parse_cluster_config(const std::string& yaml_text, const std::string& origin,
                                              const std::filesystem::path& model_dir,
                                              const std::filesystem::path& config_dir = ".");
/// Reads a cluster config; relative model paths resolve against $TROUPE_MODEL_DIR when set, else the
/// file's directory; relative TLS paths against the file's directory.
expected<cluster_config> load_cluster_config(const std::filesystem::path& file);

/// Whether model models[index] splits as its tp and pp say over a model of these hyper-parameters:
/// tp divides both the attention heads and the KV heads (the error names the model, tp and both
/// counts), pp is at most the layers, and the rest of parallel_layout::validate (feed-forward rows,
/// quantized blocks of block_elems elements). Errors name ORIGIN: models[i].tp (or .pp).
status check_model_split(const cluster_config& cfg, size_t index, const model_hparams& hp, int block_elems);

/// What `troupe node --check` and the start of a node check beyond the config's text, for every model
/// this node runs a shard or a scheduler of (every model on a gateway node): the model file's header
/// (a GGUF file is mapped, its weights not read) against check_model_split, and for each shard here its
/// kv_cache_mb against physical_bytes (check_kv_memory; 0: no check).
status check_model_files(const cluster_config& cfg, const std::string& node, uint64_t physical_bytes);

}  // namespace troupe::cluster
