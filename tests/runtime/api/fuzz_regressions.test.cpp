// Inputs the fuzz harness fuzz/openai found to escape the request decoder as exceptions (through the
// HTTP server they became a 500 instead of a 400), each kept as a test; the same inputs are in
// fuzz/corpus/openai.
#include <gtest/gtest.h>

#include "runtime/api/openai.hpp"

namespace troupe {
namespace {

// fuzz/corpus/openai/number-overflow: nlohmann::json throws out_of_range (406, number overflow), not
// parse_error, for a number too large for a double.
TEST(OpenaiRequestFuzz, ANumberTooLargeForADoubleIsMalformedJson) {
  const std::string found = "881e181180239\xee\x92\x9a.,";
  for (const std::string& body : {found, std::string(R"({"model":"m","messages":[],"temperature":1e400})")}) {
    auto chat = parse_chat_request(body);
    ASSERT_FALSE(chat);
    EXPECT_EQ(chat.error().status, 400);
    EXPECT_NE(chat.error().message.find("outside the range of a double"), std::string::npos) << chat.error().message;
    auto completion = parse_completion_request(body);
    ASSERT_FALSE(completion);
    EXPECT_EQ(completion.error().status, 400);
  }
}

}  // namespace
}  // namespace troupe
