#include "runtime/config/serve_config.hpp"

#include <yaml-cpp/yaml.h>

#include "runtime/config/yaml_read.hpp"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/model/model_runner.hpp"

namespace troupe {
namespace config {

namespace fs = std::filesystem;

status check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& origin,
                  const std::string& where) {
  for (const auto& kv : node) {
    // A list or map as a key ("{a, b}: 1", "[a]: 1") has no string form: as<std::string>() would throw.
    if (!kv.first.IsScalar())
      return key_error(origin, where + "(line " + std::to_string(kv.first.Mark().line + 1) + ")",
                       "a key must be a plain name, not a list or a map");
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return key_error(origin, where + key, "unknown key (known: " + list + ")");
    }
  }
  return {};
}

std::string expand_env(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      const size_t end = s.find('}', i + 2);
      if (end != std::string::npos) {
        const char* v = std::getenv(s.substr(i + 2, end - i - 2).c_str());
        out += v ? v : "";
        i = end;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

status positive(int64_t v, bool allow_zero, const std::string& origin, const std::string& key) {
  if (v < 0 || (!allow_zero && v == 0))
    return key_error(origin, key, "must be " + std::string(allow_zero ? ">= 0" : "> 0") + ", got " + std::to_string(v));
  return {};
}

expected<YAML::Node> parse_yaml(const std::string& text, const std::string& origin) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return make_error(errc::bad_format, origin + ": not valid YAML: " + e.what());
  }
}

expected<std::string> read_file(const fs::path& file, const std::string& what) {
  std::ifstream in(file);
  if (!in) return make_error(errc::not_found, "cannot read " + what + " '" + file.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::set<std::string>& model_keys() {
  static const std::set<std::string> keys{"name", "path", "tokenizer", "replicas", "threads", "device", "repack",
                                          "kv_cache_mb", "kv_blocks", "max_num_seqs", "max_num_batched_tokens",
                                          "enable_prefix_caching"};
  return keys;
}

expected<model_config> read_model(const YAML::Node& m, const std::string& origin, const std::string& where,
                                  const fs::path& base_dir) {
  model_config mc;
  TROUPE_TRY(read(m, "name", mc.name, origin, where));
  TROUPE_TRY(read(m, "path", mc.path, origin, where));
  TROUPE_TRY(read(m, "tokenizer", mc.tokenizer, origin, where));
  TROUPE_TRY(read(m, "replicas", mc.replicas, origin, where));
  TROUPE_TRY(read(m, "threads", mc.threads, origin, where));
  TROUPE_TRY(read(m, "device", mc.device, origin, where));
  TROUPE_TRY(read(m, "repack", mc.repack, origin, where));
  TROUPE_TRY(read(m, "kv_cache_mb", mc.kv_cache_mb, origin, where));
  TROUPE_TRY(read(m, "kv_blocks", mc.kv_blocks, origin, where));
  TROUPE_TRY(read(m, "max_num_seqs", mc.max_num_seqs, origin, where));
  TROUPE_TRY(read(m, "max_num_batched_tokens", mc.max_num_batched_tokens, origin, where));
  TROUPE_TRY(read(m, "enable_prefix_caching", mc.enable_prefix_caching, origin, where));
  if (mc.name.empty()) return key_error(origin, where + "name", "is required");
  if (mc.path.empty()) return key_error(origin, where + "path", "is required");
  TROUPE_TRY(positive(mc.replicas, false, origin, where + "replicas"));
  TROUPE_TRY(positive(mc.threads, true, origin, where + "threads"));
  if (auto d = parse_device(mc.device); !d) return key_error(origin, where + "device", d.error().message());
  TROUPE_TRY(positive(mc.kv_cache_mb, false, origin, where + "kv_cache_mb"));
  TROUPE_TRY(positive(mc.kv_blocks, true, origin, where + "kv_blocks"));
  TROUPE_TRY(positive(mc.max_num_seqs, false, origin, where + "max_num_seqs"));
  TROUPE_TRY(positive(mc.max_num_batched_tokens, false, origin, where + "max_num_batched_tokens"));
  for (std::string* p : {&mc.path, &mc.tokenizer}) {
    if (p->empty()) continue;
    *p = expand_env(*p);
    if (fs::path(*p).is_relative()) *p = (base_dir / *p).lexically_normal().string();
  }
  return mc;
}

expected<routing_config> read_routing(const YAML::Node& r, const std::string& origin) {
  routing_config rc;
  if (!r.IsMap()) return key_error(origin, "routing", "must be a mapping");
  TROUPE_TRY(check_keys(r, {"strategy", "load_factor", "prefix_blocks", "virtual_nodes"}, origin, "routing."));
  TROUPE_TRY(read(r, "strategy", rc.strategy, origin, "routing."));
  TROUPE_TRY(read(r, "load_factor", rc.load_factor, origin, "routing."));
  TROUPE_TRY(read(r, "prefix_blocks", rc.prefix_blocks, origin, "routing."));
  TROUPE_TRY(read(r, "virtual_nodes", rc.virtual_nodes, origin, "routing."));
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
    TROUPE_TRY(read(s, "port", cfg.server.port, origin, "server."));
    TROUPE_TRY(read(s, "http_threads", cfg.server.http_threads, origin, "server."));
    if (cfg.server.port < 0 || cfg.server.port > 65535)
      return key_error(origin, "server.port", "must be in 0..65535, got " + std::to_string(cfg.server.port));
    TROUPE_TRY(positive(cfg.server.http_threads, false, origin, "server.http_threads"));
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

}  // namespace troupe
