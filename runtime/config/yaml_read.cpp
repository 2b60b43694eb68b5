#include "runtime/config/yaml_read.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

namespace troupe::config {
namespace {

namespace fs = std::filesystem;

/// Sees every key of every mapping with its position, which the loaded node tree no longer tells
/// apart (YAML::Load keeps both pairs of a duplicate and node[key] finds the first). Aliases are not
/// followed, so an anchor used a billion times is still read once.
class duplicate_finder : public YAML::EventHandler {
 public:
  /// The first duplicate: its path ("models[0].threads") and both marks.
  struct found {
    std::string path;
    YAML::Mark first, second;
  };
  std::optional<found> dup;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { leaf(mark, "~"); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { leaf({}, {}); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string& value) override {
    leaf(mark, value);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open(false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open(true);
  }
  void OnMapEnd() override { close(); }

 private:
  struct frame {
    bool map = false;
    bool at_key = true;        // map: the next node is a key
    size_t index = 0;          // sequence: the next node's index
    std::string path;          // of this container ("" at the top)
    std::string key;           // map: the current value's key (a scalar key; "" otherwise)
    std::map<std::string, YAML::Mark> keys;
  };
  std::vector<frame> stack_;

  std::string child_path() const {
    if (stack_.empty()) return {};
    const frame& f = stack_.back();
    if (f.map) return f.path.empty() ? f.key : f.path + "." + f.key;
    return f.path + "[" + std::to_string(f.index) + "]";
  }
  /// A scalar, null or alias ended (an alias key, or a key that is a collection, is never compared).
  void leaf(const YAML::Mark& mark, const std::optional<std::string>& key) {
    if (!stack_.empty() && stack_.back().map && stack_.back().at_key) {
      frame& f = stack_.back();
      f.key = key.value_or("");
      if (key && !dup) {
        auto [it, fresh] = f.keys.emplace(*key, mark);
        if (!fresh) dup = found{f.path.empty() ? *key : f.path + "." + *key, it->second, mark};
      }
      f.at_key = false;
      return;
    }
    done();
  }
  void open(bool map) {
    frame f;
    f.map = map;
    f.path = child_path();
    stack_.push_back(std::move(f));
  }
  void close() {
    if (!stack_.empty()) stack_.pop_back();
    if (!stack_.empty() && stack_.back().map && stack_.back().at_key) {
      stack_.back().key.clear();  // a collection as a key
      stack_.back().at_key = false;
      return;
    }
    done();
  }
  /// A value ended.
  void done() {
    if (stack_.empty()) return;
    frame& f = stack_.back();
    if (f.map) {
      f.at_key = true;
      f.key.clear();
    } else {
      ++f.index;
    }
  }
};

/// What a node holds, for "got ..." in errors.
std::string shown(const YAML::Node& v) {
  if (v.IsScalar()) return v.Scalar();
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a mapping";
  return "nothing";
}

bool name_char(char c, bool first) {
  return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (!first && c >= '0' && c <= '9');
}

}  // namespace

status check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& origin,
                  const std::string& where) {
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar()
                            : kv.first.IsNull() ? "(an empty key)"
                                                : "(" + shown(kv.first) + " as a key)";
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return key_error(origin, where + key, "unknown key (known: " + list + ")");
    }
  }
  return {};
}

status read_int64(const YAML::Node& node, const char* key, int64_t& out, int_range r, const std::string& origin,
                  const std::string& where) {
  const YAML::Node v = node[key];
  if (!v) return {};
  int64_t n = 0;
  bool ok = v.IsScalar();
  if (ok) {
    try {
      n = v.as<int64_t>();  // a fraction, a word or more than 64 bits throws
    } catch (const YAML::Exception&) {
      ok = false;
    }
  }
  if (!ok || n < r.lo || n > r.hi) {
    const std::string unit = *r.unit ? std::string(" (") + r.unit + ")" : std::string();
    return key_error(origin, where + key, "must be an integer in " + std::to_string(r.lo) + ".." + std::to_string(r.hi) +
                                              unit + ", got " + shown(v));
  }
  out = n;
  return {};
}

expected<std::string> expand_env(const std::string& s, const std::string& origin, const std::string& key, int line) {
  const std::string on_line = " on line " + std::to_string(line);
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$' || i + 1 >= s.size() || s[i + 1] != '{') {
      out += s[i];
      continue;
    }
    const size_t end = s.find('}', i + 2);
    if (end == std::string::npos) return key_error(origin, key, "an unterminated ${" + on_line + " (write ${NAME})");
    const std::string ref = s.substr(i + 2, end - i - 2);  // NAME or NAME:-default
    const size_t colon = ref.find(":-");
    const std::string name = ref.substr(0, colon);
    bool valid = !name.empty();
    for (size_t k = 0; k < name.size() && valid; ++k) valid = name_char(name[k], k == 0);
    if (!valid) return key_error(origin, key, "${" + ref + "}" + on_line + ": not a variable name");
    const char* value = std::getenv(name.c_str());
    if (colon != std::string::npos && (!value || !*value)) {
      out += ref.substr(colon + 2);
    } else if (value) {
      out += value;
    } else {
      return key_error(origin, key, "${" + name + "}" + on_line + " is not set (export it, or write ${" + name +
                                        ":-DEFAULT})");
    }
    i = end;
  }
  return out;
}

expected<YAML::Node> parse_yaml(const std::string& text, const std::string& origin) {
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    duplicate_finder finder;
    parser.HandleNextDocument(finder);
    if (finder.dup) {
      const auto& d = *finder.dup;
      const std::string where = d.first.line == d.second.line
                                    ? "line " + std::to_string(d.first.line + 1) + " (columns " +
                                          std::to_string(d.first.column + 1) + " and " + std::to_string(d.second.column + 1) + ")"
                                    : "lines " + std::to_string(d.first.line + 1) + " and " + std::to_string(d.second.line + 1);
      return key_error(origin, d.path, "duplicate key on " + where + " (give each key once)");
    }
    // Another document with content would be dropped by YAML::Load: refuse it (an empty one, as after
    // a trailing "---", drops nothing).
    struct document : YAML::EventHandler {
      std::optional<YAML::Mark> start;
      bool content = false;
      void OnDocumentStart(const YAML::Mark& m) override { start = m; }
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
      void OnAlias(const YAML::Mark&, YAML::anchor_t) override { content = true; }
      void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override { content = true; }
      void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        content = true;
      }
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        content = true;
      }
      void OnMapEnd() override {}
    };
    // yaml-cpp 0.7 returns true forever on some malformed streams (",\n}:\n", found by fuzz/serve_config)
    // while YAML::Load below reads them: bound the walk.
    constexpr int most_documents = 1000;
    int documents = 0;
    for (document next; parser.HandleNextDocument(next); next = document{}) {
      if (++documents > most_documents)
        return key_error(origin, "(top level)", "more than " + std::to_string(most_documents) +
                                                    " YAML documents, or a stream yaml-cpp cannot end (a config is one document)");
      if (next.content)
        return key_error(origin, "(top level)", "a second YAML document starts on line " +
                                                    std::to_string(next.start ? next.start->line + 1 : 0) +
                                                    " (a config is one document: remove the ---)");
    }
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
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

}  // namespace troupe::config
