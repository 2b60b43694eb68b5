// Inputs the fuzz harnesses (fuzz/serve_config, fuzz/cluster_config) found to crash the config
// parsers, each kept as a test; the same inputs are in fuzz/corpus.
#include <gtest/gtest.h>

#include "parse_util.hpp"

namespace troupe::test {
namespace {

// fuzz/corpus/cluster_config/map-as-key.yaml: a key that is itself a map made check_keys throw
// YAML::TypedBadConversion, which ended the process (std::terminate).
TEST(ServeConfigFuzz, AKeyThatIsAMapIsAnErrorNamingIt) {
  const std::string msg = error_of("{nod,hes}:");
  EXPECT_NE(msg.find("test.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("as a key"), std::string::npos) << msg;
  EXPECT_NE(error_of("server:\n  [a, b]: 1\n").find("server."), std::string::npos);
}

// fuzz/corpus/serve_config/endless-documents-*: yaml-cpp's HandleNextDocument returned true forever
// on these, so the check for a second document never ended (found by the fuzzers' 20 s CI runs).
TEST(ServeConfigFuzz, AStreamYamlCppCannotEndIsAnErrorNotAHang) {
  for (const std::string text : {std::string(",\n}:\n"), std::string("\0,\n}:\n", 5), std::string(",n}{od}hsh\ns")}) {
    const std::string msg = error_of(text);
    EXPECT_NE(msg.find("test.yaml"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace troupe::test
