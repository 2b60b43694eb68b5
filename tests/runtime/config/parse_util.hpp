#pragma once
// Helpers of the serve config tests: parse a YAML text as a file at /base, or get its error.
#include <gtest/gtest.h>

#include <string>

#include "runtime/config/serve_config.hpp"

namespace troupe::test {

inline expected<serve_config> parse(const std::string& text) { return parse_serve_config(text, "test.yaml", "/base"); }

/// The error message of a text that must not parse ("" and a test failure if it does).
inline std::string error_of(const std::string& text) {
  auto c = parse(text);
  EXPECT_FALSE(c) << text;
  return c ? std::string() : c.error().message();
}

}  // namespace troupe::test
