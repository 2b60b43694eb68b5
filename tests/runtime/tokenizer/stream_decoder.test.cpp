// Streaming detokenization never emits half a UTF-8 character and reassembles what the full
// decode gives.

#include <gtest/gtest.h>

#include "golden_support.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "runtime/tokenizer/unicode.hpp"

namespace troupe {
namespace {

using testing::models_dir;
using testing::read_golden;

std::unique_ptr<tokenizer> must_load(const std::filesystem::path& p) {
  auto t = load_tokenizer(p);
  EXPECT_TRUE(t) << t.error().what();
  return t ? std::move(*t) : nullptr;
}

TEST(stream_decoder, holds_back_a_character_split_across_byte_tokens) {
  auto tok = must_load(models_dir() / "stories260K" / "stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  // "😀" is not in the 512-piece vocabulary: "▁" then its four bytes as <0xF0> <0x9F> <0x98> <0x80>.
  const auto ids = tok->encode("\xF0\x9F\x98\x80");
  ASSERT_GE(ids.size(), 4u);
  stream_decoder dec(*tok);
  std::vector<std::string> outs;
  for (int32_t id : ids) outs.push_back(dec.push(id));
  for (size_t i = 0; i + 1 < outs.size(); ++i) EXPECT_EQ(outs[i], "") << "token " << i;
  EXPECT_EQ(outs.back(), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.flush(), "");
}

TEST(stream_decoder, flush_turns_an_unfinished_character_into_one_replacement_char) {
  auto tok = must_load(models_dir() / "stories260K" / "stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  const auto ids = tok->encode("\xF0\x9F\x98\x80");
  ASSERT_GE(ids.size(), 3u);
  stream_decoder dec(*tok);
  std::string out;
  for (size_t i = 0; i + 2 < ids.size(); ++i) out += dec.push(ids[i]);  // stop two bytes short
  EXPECT_EQ(out, "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
}

TEST(stream_decoder, strips_the_dummy_prefix_only_at_the_start) {
  auto tok = must_load(models_dir() / "stories260K" / "stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  const auto ids = tok->encode("Hello world");
  stream_decoder fresh(*tok);
  stream_decoder continuing(*tok, /*at_start=*/false);
  std::string a, b;
  for (int32_t id : ids) {
    a += fresh.push(id);
    b += continuing.push(id);
  }
  EXPECT_EQ(a, "Hello world");
  EXPECT_EQ(b, " Hello world");
}

TEST(stream_decoder, bos_does_not_hide_the_dummy_prefix_strip) {
  auto tok = must_load(models_dir() / "stories260K" / "stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  const auto ids = tok->encode_prompt("Hello");
  ASSERT_EQ(ids.front(), tok->bos_id());
  stream_decoder dec(*tok);
  std::string out;
  for (int32_t id : ids) out += dec.push(id);
  EXPECT_EQ(out, "Hello");
  EXPECT_EQ(tok->decode(ids), "Hello");
}

// Pushing every golden case token by token gives the full decode, and every piece is valid UTF-8.
void check_stream(const std::filesystem::path& model, const std::string& golden) {
  auto tok = must_load(model);
  ASSERT_NE(tok, nullptr);
  for (const auto& c : read_golden(golden)) {
    stream_decoder dec(*tok);
    std::string all;
    for (int32_t id : c.ids) {
      const std::string piece = dec.push(id);
      EXPECT_EQ(unicode::sanitize_utf8(piece), piece) << golden << " case " << c.id << ": invalid UTF-8 emitted";
      all += piece;
    }
    all += dec.flush();
    EXPECT_EQ(all, c.decoded) << golden << " case " << c.id;
  }
}

TEST(stream_decoder, reassembles_every_golden_case) {
  check_stream(models_dir() / "stories260K" / "stories260K.gguf", "stories260K_gguf_dev.json");
  check_stream(models_dir() / "llama2-tiny-random" / "llama-2-tiny-random.gguf", "llama2_dev.json");
  check_stream(models_dir() / "smollm2-135m-tokenizer", "smollm2_dev.json");
}

TEST(unicode, incomplete_tail_and_sanitize) {
  EXPECT_EQ(unicode::incomplete_utf8_tail("ab\xC3"), 1u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("\xC3\xA9\xE4\xB8"), 2u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("\xC3\xA9"), 0u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\xFF"), 0u);  // invalid, not incomplete
  EXPECT_EQ(unicode::sanitize_utf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(unicode::sanitize_utf8("\xE4\xB8" "x"), "\xEF\xBF\xBD" "x");
  EXPECT_TRUE(unicode::is_letter(0x4E2D));   // 中
  EXPECT_TRUE(unicode::is_number(0x0663));   // Arabic-Indic digit three
  EXPECT_FALSE(unicode::is_letter(0x0301));  // combining acute accent
  EXPECT_TRUE(unicode::is_whitespace(0x3000));
  EXPECT_EQ(unicode::byte_to_char(' '), "\xC4\xA0");  // "Ġ"
  EXPECT_EQ(unicode::char_to_byte(0x120), ' ');
}

}  // namespace
}  // namespace troupe
