// The hand-written pre-tokenizer patterns split as their regexes do.

#include "runtime/tokenizer/pre_tokenizer.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

using words = std::vector<std::string>;

words split_with(split_pattern p, std::string_view text) {
  pre_tokenizer pre;
  pre.add_split(p);
  return pre.split(text);
}

TEST(pre_tokenizer, gpt2_keeps_a_space_with_the_next_word) {
  EXPECT_EQ(split_with(split_pattern::gpt2, "Hello world's  test\n"),
            (words{"Hello", " world", "'s", " ", " test", "\n"}));
  EXPECT_EQ(split_with(split_pattern::gpt2, "abc123 !!x"), (words{"abc", "123", " !!", "x"}));
  EXPECT_EQ(split_with(split_pattern::gpt2, "a  \t\n"), (words{"a", "  \t\n"}));
  EXPECT_EQ(split_with(split_pattern::gpt2, "DON'T"), (words{"DON", "'", "T"}));  // case-sensitive
}

TEST(pre_tokenizer, gpt2_uses_unicode_letters_and_numbers) {
  // "é" is a letter, U+0301 (combining acute) is neither letter nor number, "٣" (Arabic-Indic 3) a number.
  EXPECT_EQ(split_with(split_pattern::gpt2, "caf\xC3\xA9 e\xCC\x81 \xD9\xA3"),
            (words{"caf\xC3\xA9", " e", "\xCC\x81", " \xD9\xA3"}));
}

TEST(pre_tokenizer, llama3_groups_digits_by_three_and_keeps_newlines_together) {
  EXPECT_EQ(split_with(split_pattern::llama3, "12345"), (words{"123", "45"}));
  EXPECT_EQ(split_with(split_pattern::llama3, "Hello, WORLD'S\r\n\r\n  x"),
            (words{"Hello", ",", " WORLD", "'S", "\r\n\r\n", " ", " x"}));
  EXPECT_EQ(split_with(split_pattern::llama3, "x.\n\ny"), (words{"x", ".\n\n", "y"}));
}

TEST(pre_tokenizer, qwen2_splits_every_digit) {
  EXPECT_EQ(split_with(split_pattern::qwen2, "a12345"), (words{"a", "1", "2", "3", "4", "5"}));
}

TEST(pre_tokenizer, digits_step_isolates_numbers) {
  pre_tokenizer individual;
  individual.add_digits(true);
  EXPECT_EQ(individual.split("ab123cd4"), (words{"ab", "1", "2", "3", "cd", "4"}));
  pre_tokenizer grouped;
  grouped.add_digits(false);
  EXPECT_EQ(grouped.split("ab123cd4"), (words{"ab", "123", "cd", "4"}));
}

TEST(pre_tokenizer, byte_level_prefix_space_applies_to_each_word) {
  pre_tokenizer pre;
  pre.add_prefix_space();
  pre.add_split(split_pattern::gpt2);
  EXPECT_EQ(pre.split("hi there"), (words{" hi", " there"}));
  EXPECT_EQ(pre.split(" hi"), (words{" hi"}));
}

TEST(pre_tokenizer, known_regexes_are_recognised_and_others_refused) {
  EXPECT_EQ(split_pattern_from_regex(R"(\p{N})"), split_pattern::digit);
  EXPECT_EQ(split_pattern_from_regex(
                R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
            split_pattern::llama3);
  EXPECT_FALSE(split_pattern_from_regex(R"(\w+)").has_value());
}

}  // namespace
}  // namespace troupe
