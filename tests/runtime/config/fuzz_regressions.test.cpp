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
  EXPECT_NE(msg.find("key must be a plain name"), std::string::npos) << msg;
  EXPECT_NE(error_of("server:\n  [a, b]: 1\n").find("server."), std::string::npos);
}

}  // namespace
}  // namespace troupe::test
