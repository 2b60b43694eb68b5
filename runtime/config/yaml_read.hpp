#pragma once
// Reading YAML config sections with errors that name the key: shared by `troupe serve`'s config
// (serve_config) and the cluster config (cluster/cluster_config). Every error reads
// "ORIGIN: KEY: PROBLEM".

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
template <class T>
status read(const YAML::Node& node, const char* key, T& out, const std::string& origin, const std::string& where) {
  const YAML::Node v = node[key];
  if (!v) return {};
  try {
    out = v.as<T>();
  } catch (const YAML::Exception&) {
    const char* want = std::is_same_v<T, bool> ? "true or false" : std::is_integral_v<T> ? "an integer"
                       : std::is_floating_point_v<T> ? "a number" : "a string";
    return key_error(origin, where + key, std::string("must be ") + want);
  }
  return {};
}

/// ${VAR} -> the environment variable's value ("" if unset).
std::string expand_env(const std::string& s);

/// v > 0 (or >= 0 with allow_zero), else an error naming key.
status positive(int64_t v, bool allow_zero, const std::string& origin, const std::string& key);

/// Parses YAML text; a syntax error is bad_format naming the origin.
expected<YAML::Node> parse_yaml(const std::string& text, const std::string& origin);

/// Reads a whole file; not_found names it.
expected<std::string> read_file(const std::filesystem::path& file, const std::string& what);

/// The keys of a model entry that serve_config and the cluster config share.
const std::set<std::string>& model_keys();
/// Reads the model_keys() of one model entry (`where` is e.g. "models[0].") and checks them; relative
/// paths resolve against base_dir after ${VAR} expansion. Other keys are the caller's to check.
expected<model_config> read_model(const YAML::Node& m, const std::string& origin, const std::string& where,
                                  const std::filesystem::path& base_dir);

/// Reads and validates a `routing` section.
expected<routing_config> read_routing(const YAML::Node& r, const std::string& origin);

}  // namespace troupe::config
