#pragma once
// Reading the golden tokenizer cases of ../shared/golden/tokenizers at run time.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace troupe::testing {

inline std::filesystem::path shared_dir() { return TROUPE_SHARED_DIR; }
inline std::filesystem::path models_dir() { return shared_dir() / "models"; }
inline std::filesystem::path golden_dir() { return shared_dir() / "golden" / "tokenizers"; }

/// One golden case.
struct golden_case {
  std::string id;
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
  bool roundtrip = false;
};

/// The cases of a golden file; fails the test (and returns none) when the file is unreadable.
inline std::vector<golden_case> read_golden(const std::string& name) {
  std::vector<golden_case> out;
  std::ifstream in(golden_dir() / name);
  if (!in) {
    ADD_FAILURE() << "cannot open golden file " << (golden_dir() / name);
    return out;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str());
  for (const auto& c : j.at("cases")) {
    golden_case g;
    g.id = c.at("id").get<std::string>();
    g.text = c.at("text").get<std::string>();
    g.ids = c.at("ids").get<std::vector<int32_t>>();
    g.decoded = c.at("decoded").get<std::string>();
    g.roundtrip = c.value("roundtrip", false);
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace troupe::testing
