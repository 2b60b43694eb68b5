#pragma once
// Reading YAML config sections with errors that name the key: shared by `troupe serve`'s config
// (serve_config) and the cluster config (cluster/cluster_config). Every error reads
// "ORIGIN: KEY: PROBLEM".
//
// parse_yaml refuses what yaml-cpp would silently drop: a key given twice in one mapping (yaml-cpp
// keeps the first) and a second document (YAML::Load reads only the first). Integers are read with
// their allowed range (read_int), so nothing out of range is clamped or wraps.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <type_traits>

#include "runtime/config/serve_config.hpp"
#include "runtime/core/error.hpp"

namespace troupe::config {

inline unexpected key_error(const std::string& origin, const std::string& key, const std::string& problem) {
  return make_error(errc::invalid_argument, origin + ": " + key + ": " + problem);
}

/// Refuses keys the section does not know, so a typo is an error instead of a silent default.
status check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& origin,
                  const std::string& where);

/// Reads node[key] into out when present; a value of the wrong kind names the key and the kind wanted.
/// Integers go through read_int, which needs their range.
template <class T>
status read(const YAML::Node& node, const char* key, T& out, const std::string& origin, const std::string& where) {
  static_assert(!std::is_integral_v<T> || std::is_same_v<T, bool>, "integers: read_int, with their range");
  const YAML::Node v = node[key];
  if (!v) return {};
  try {
    out = v.as<T>();
  } catch (const YAML::Exception&) {
    const char* want = std::is_same_v<T, bool> ? "true or false" : std::is_floating_point_v<T> ? "a number" : "a string";
    return key_error(origin, where + key, std::string("must be ") + want);
  }
  return {};
}

/// The allowed values of an integer key; unit is shown after the range ("MiB").
struct int_range {
  int64_t lo = 0;
  int64_t hi = 0;
  const char* unit = "";
};

/// node[key] as an integer in r, else "must be an integer in LO..HI (UNIT), got VALUE" (a fraction,
/// a word, a number past 64 bits included).
status read_int64(const YAML::Node& node, const char* key, int64_t& out, int_range r, const std::string& origin,
                  const std::string& where);

/// read_int64 into a narrower integer; r must fit in T.
template <class T>
status read_int(const YAML::Node& node, const char* key, T& out, int_range r, const std::string& origin,
                const std::string& where) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  int64_t v = static_cast<int64_t>(out);
  TROUPE_TRY(read_int64(node, key, v, r, origin, where));
  out = static_cast<T>(v);
  return {};
}

/// Expands ${VAR} and ${VAR:-default} (the default when VAR is unset or empty, as in the shell) in
/// the value of `key` found on `line` (1-based). An unset VAR without a default, "${}", a name that
/// is not [A-Za-z_][A-Za-z0-9_]* and an unterminated "${" are errors naming the key, the reference and
/// the line. Only "${" starts a reference; a lone "$" stays as it is. Callers expand the string of one
/// scalar after parsing, so a variable's value can never add YAML structure.
expected<std::string> expand_env(const std::string& s, const std::string& origin, const std::string& key, int line);

/// Parses YAML text: a syntax error is bad_format naming the origin; a duplicate key (in any mapping,
/// at any depth) names its path and both lines; a second document is refused. Safe on any input
/// (a fuzzer may call it, or parse_serve_config / parse_cluster_config, on arbitrary text).
expected<YAML::Node> parse_yaml(const std::string& text, const std::string& origin);

/// Reads a whole file; not_found names it.
expected<std::string> read_file(const std::filesystem::path& file, const std::string& what);

/// The keys of a model entry that serve_config and the cluster config share.
const std::set<std::string>& model_keys();
/// Reads the model_keys() of one model entry (`where` is e.g. "models[0].") and checks them; relative
/// paths resolve against base_dir after ${VAR} expansion. Other keys are the caller's to check, and
/// so is `replicas` unless replica_count (the cluster config's `replicas` is a list of placements).
expected<model_config> read_model(const YAML::Node& m, const std::string& origin, const std::string& where,
                                  const std::filesystem::path& base_dir, bool replica_count = true);

/// Reads and validates a `routing` section.
expected<routing_config> read_routing(const YAML::Node& r, const std::string& origin);

}  // namespace troupe::config
