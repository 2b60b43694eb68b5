#pragma once
// The configuration of `troupe serve`: the HTTP server and the models it hosts, each with its
// replica count, threads, KV cache size and scheduler limits. Loaded from YAML (deploy/troupe.yaml
// is a commented example with every key and its default). Errors name the key and the problem.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/serving/routing_strategies.hpp"

namespace troupe {

/// The allowed values of the integer keys (the parser refuses anything else, naming the key, the value
/// and the range). The caps are far beyond any real use; they keep every product of these values
/// (KV bytes, blocks of max_num_seqs contexts) clear of overflow.
namespace limits {
inline constexpr int64_t max_replicas = 256;
inline constexpr int64_t max_threads = 1024;                  ///< model threads (0: all cores), http_threads
inline constexpr int64_t max_kv_cache_mb = int64_t{1} << 24;  ///< 16 TiB; the start-up check also caps it at physical memory
inline constexpr int64_t max_kv_blocks = 2147483647;          ///< block ids are int32
inline constexpr int64_t max_num_seqs = 65536;
inline constexpr int64_t max_num_batched_tokens = int64_t{1} << 24;
}  // namespace limits

/// One hosted model.
struct model_config {
  std::string name;                      ///< the name clients ask for (required)
  std::string path;                      ///< .gguf, Hugging Face directory or llama2.c .bin (required)
  std::string tokenizer;                 ///< tokenizer file when the model has none inside ("": automatic)
  int replicas = 1;                      ///< independent copies (shard + scheduler each) behind the router
  int threads = 0;                       ///< CPU threads per replica; 0: all cores
  std::string device = "cpu";            ///< where each replica runs: "cpu" or "cuda:N"
  bool repack = true;                    ///< CPU: copy the matrices into huge pages and the fast kernels' layout (model_options::repack)
  int64_t kv_cache_mb = 256;             ///< KV cache budget per replica in MiB (when kv_blocks is 0)
  int64_t kv_blocks = 0;                 ///< KV cache size per replica in 16-token blocks; 0: from kv_cache_mb
  int64_t max_num_seqs = 64;             ///< sequences in one batch at most
  int64_t max_num_batched_tokens = 512;  ///< tokens per scheduler step at most
  bool enable_prefix_caching = true;     ///< reuse cached KV blocks of shared prompt prefixes
};

/// The HTTP side.
struct server_config {
  std::string host = "127.0.0.1";  ///< address to bind
  int port = 8000;                 ///< 0: any free port
  int http_threads = 2;            ///< threads running the HTTP server
};

/// Everything `troupe serve` reads from its config file.
struct serve_config {
  server_config server;
  std::vector<model_config> models;
  routing_config routing;  ///< how the router spreads requests over each model's replicas
};

/// Parses YAML text; `origin` names the source in error messages. Relative model paths resolve
/// against base_dir, after ${VAR} references to environment variables are expanded.
expected<serve_config> parse_serve_config(const std::string& yaml_text, const std::string& origin,
                                          const std::filesystem::path& base_dir);
/// Reads and parses a config file (relative paths resolve against the file's directory).
expected<serve_config> load_serve_config(const std::filesystem::path& file);

/// This machine's physical memory in bytes (sysconf), 0 when unknown.
uint64_t physical_memory_bytes();
/// A CPU model's kv_cache_mb must fit in physical_bytes (this machine's memory; 0: unknown, no check):
/// a budget beyond it cannot be what was meant. So must its kv_blocks when block_bytes (the bytes of
/// one block, from the model's header) is given. The error names ORIGIN: WHEREkv_cache_mb (or
/// kv_blocks) and both figures. A GPU's KV cache is checked by its runner when it allocates.
status check_kv_memory(const model_config& m, const std::string& origin, const std::string& where,
                       uint64_t physical_bytes, uint64_t block_bytes = 0);

}  // namespace troupe
