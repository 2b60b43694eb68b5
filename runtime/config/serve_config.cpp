#include "runtime/config/serve_config.hpp"

#include <yaml-cpp/yaml.h>

#include "runtime/config/yaml_read.hpp"

#include <unistd.h>

#include <set>

#include "runtime/model/model_runner.hpp"

namespace troupe {
namespace config {

namespace fs = std::filesystem;

const std::set<std::string>& model_keys() {
  static const std::set<std::string> keys{"name", "path", "tokenizer", "replicas", "threads", "device", "repack",
                                          "kv_cache_mb", "kv_blocks", "max_num_seqs", "max_num_batched_tokens",
                                          "enable_prefix_caching"};
  return keys;
}

expected<model_config> read_model(const YAML::Node& m, const std::string& origin, const std::string& where,
                                  const fs::path& base_dir, bool replica_count) {
  model_config mc;
  TROUPE_TRY(read(m, "name", mc.name, origin, where));
  TROUPE_TRY(read(m, "path", mc.path, origin, where));
  TROUPE_TRY(read(m, "tokenizer", mc.tokenizer, origin, where));
  if (replica_count) TROUPE_TRY(read_int(m, "replicas", mc.replicas, {1, limits::max_replicas}, origin, where));
  TROUPE_TRY(read_int(m, "threads", mc.threads, {0, limits::max_threads}, origin, where));
  TROUPE_TRY(read(m, "device", mc.device, origin, where));
  TROUPE_TRY(read(m, "repack", mc.repack, origin, where));
  TROUPE_TRY(read_int(m, "kv_cache_mb", mc.kv_cache_mb, {1, limits::max_kv_cache_mb, "MiB"}, origin, where));
  TROUPE_TRY(read_int(m, "kv_blocks", mc.kv_blocks, {0, limits::max_kv_blocks}, origin, where));
  TROUPE_TRY(read_int(m, "max_num_seqs", mc.max_num_seqs, {1, limits::max_num_seqs}, origin, where));
  TROUPE_TRY(read_int(m, "max_num_batched_tokens", mc.max_num_batched_tokens, {1, limits::max_num_batched_tokens}, origin, where));
  TROUPE_TRY(read(m, "enable_prefix_caching", mc.enable_prefix_caching, origin, where));
  if (mc.name.empty()) return key_error(origin, where + "name", "is required");
  if (mc.path.empty()) return key_error(origin, where + "path", "is required");
  if (auto d = parse_device(mc.device); !d) return key_error(origin, where + "device", d.error().message());
  // ${VAR} expands here, in the one string already parsed: a value cannot add keys or structure.
  for (auto [key, value] : {std::pair<const char*, std::string*>{"path", &mc.path}, {"tokenizer", &mc.tokenizer}}) {
    std::string& p = *value;
    if (p.empty()) continue;
    auto expanded = expand_env(p, origin, where + key, m[key].Mark().line + 1);
    TROUPE_TRY(expanded);
    p = std::move(*expanded);
    if (p.empty() && value == &mc.path) return key_error(origin, where + key, "is empty once its ${...} are expanded");
    if (!p.empty() && fs::path(p).is_relative()) p = (base_dir / p).lexically_normal().string();
  }
  return mc;
}

expected<routing_config> read_routing(const YAML::Node& r, const std::string& origin) {
  routing_config rc;
  if (!r.IsMap()) return key_error(origin, "routing", "must be a mapping");
  TROUPE_TRY(check_keys(r, {"strategy", "load_factor", "prefix_blocks", "virtual_nodes"}, origin, "routing."));
  TROUPE_TRY(read(r, "strategy", rc.strategy, origin, "routing."));
  TROUPE_TRY(read(r, "load_factor", rc.load_factor, origin, "routing."));
  // The ranges validate() checks, so a number past int is refused with them too.
  TROUPE_TRY(read_int(r, "prefix_blocks", rc.prefix_blocks, {1, 1024}, origin, "routing."));
  TROUPE_TRY(read_int(r, "virtual_nodes", rc.virtual_nodes, {1, 4096}, origin, "routing."));
  // validate() names the field ("routing.load_factor: ..."); the origin goes in front.
  if (auto st = validate(rc); !st) return make_error(errc::invalid_argument, origin + ": " + st.error().message());
  return rc;
}

}  // namespace config

namespace fs = std::filesystem;
using namespace config;

expected<serve_config> parse_serve_config(const std::string& yaml_text, const std::string& origin,
                                          const fs::path& base_dir) {
  auto parsed = parse_yaml(yaml_text, origin);
  TROUPE_TRY(parsed);
  const YAML::Node root = *parsed;
  serve_config cfg;
  if (!root || root.IsNull()) return key_error(origin, "models", "the file is empty; list at least one model");
  if (!root.IsMap()) return key_error(origin, "(top level)", "must be a mapping with `server` and `models`");
  TROUPE_TRY(check_keys(root, {"server", "models", "routing"}, origin, ""));
  if (const YAML::Node s = root["server"]) {
    if (!s.IsMap()) return key_error(origin, "server", "must be a mapping");
    TROUPE_TRY(check_keys(s, {"host", "port", "http_threads"}, origin, "server."));
    TROUPE_TRY(read(s, "host", cfg.server.host, origin, "server."));
    TROUPE_TRY(read_int(s, "port", cfg.server.port, {0, 65535}, origin, "server."));
    TROUPE_TRY(read_int(s, "http_threads", cfg.server.http_threads, {1, limits::max_threads}, origin, "server."));
  }
  if (const YAML::Node r = root["routing"]) {
    auto routing = read_routing(r, origin);
    TROUPE_TRY(routing);
    cfg.routing = *routing;
  }
  const YAML::Node models = root["models"];
  if (!models || !models.IsSequence() || models.size() == 0)
    return key_error(origin, "models", "must be a non-empty list of models");
  std::set<std::string> names;
  for (size_t i = 0; i < models.size(); ++i) {
    const YAML::Node m = models[i];
    const std::string where = "models[" + std::to_string(i) + "].";
    if (!m.IsMap()) return key_error(origin, "models[" + std::to_string(i) + "]", "must be a mapping");
    TROUPE_TRY(check_keys(m, model_keys(), origin, where));
    auto mc = read_model(m, origin, where, base_dir);
    TROUPE_TRY(mc);
    if (!names.insert(mc->name).second) return key_error(origin, where + "name", "'" + mc->name + "' is listed twice");
    cfg.models.push_back(std::move(*mc));
  }
  return cfg;
}

expected<serve_config> load_serve_config(const fs::path& file) {
  auto text = read_file(file, "config file");
  TROUPE_TRY(text);
  return parse_serve_config(*text, file.string(), file.has_parent_path() ? file.parent_path() : fs::path("."));
}

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

status check_kv_memory(const model_config& m, const std::string& origin, const std::string& where,
                       uint64_t physical_bytes, uint64_t block_bytes) {
  auto d = parse_device(m.device);
  if (!d || d->kind != device_spec::kind_t::cpu || physical_bytes == 0) return {};
  // kv_cache_mb is at most limits::max_kv_cache_mb, so the shift cannot overflow.
  if (static_cast<uint64_t>(m.kv_cache_mb) << 20 > physical_bytes)
    return key_error(origin, where + "kv_cache_mb", std::to_string(m.kv_cache_mb) + " MiB is more than this machine's physical memory (" +
                                                        std::to_string(physical_bytes >> 20) + " MiB)");
  if (m.kv_blocks > 0 && block_bytes > 0 && static_cast<uint64_t>(m.kv_blocks) > physical_bytes / block_bytes)
    return key_error(origin, where + "kv_blocks", std::to_string(m.kv_blocks) + " blocks of " + std::to_string(block_bytes) +
                                                      " bytes are more than this machine's physical memory (" +
                                                      std::to_string(physical_bytes >> 20) + " MiB)");
  return {};
}

}  // namespace troupe
