// tokenizer::min_token_count is a true lower bound on the tokens of a text, for every kind of
// tokenizer and normalizer (the server rejects prompts with it before tokenizing them).

#include <gtest/gtest.h>

#include <random>

#include "golden_support.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {
namespace {

using testing::models_dir;

std::vector<std::string> texts() {
  std::vector<std::string> out = {
      "",
      "Once upon a time there was a little girl named Lily.",
      std::string(5000, ' '),
      "a" + std::string(3000, ' ') + "b",
      "   leading and trailing   ",
      "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81 \xE2\x96\x81",  // literal "▁" that SentencePiece strips at the end
      std::string(4000, 'a'),
      "<s><|im_start|>user\nhi<|im_end|></s>",
      "\xF0\x9F\x98\x80 emoji \xE4\xB8\xAD\xE6\x96\x87 text\n\n\t tabs",
  };
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    std::string s(static_cast<size_t>(rng() % 600), '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? ' ' : rng() % 256);
    out.push_back(std::move(s));
  }
  return out;
}

void expect_lower_bound(const tokenizer& tok, const std::string& name) {
  EXPECT_GE(tok.max_token_bytes(), 1);
  for (const std::string& t : texts()) {
    for (bool special : {false, true}) {
      const auto ids = tok.encode(t, special);
      EXPECT_LE(tok.min_token_count(t), static_cast<int64_t>(ids.size()))
          << name << ": " << t.size() << " bytes, special=" << special;
    }
  }
  // The bound is useful: a long text of ordinary words is bounded well above zero.
  std::string words;
  while (words.size() < 100000) words += "the quick brown fox jumps over the lazy dog ";
  EXPECT_GE(tok.min_token_count(words), static_cast<int64_t>(words.size()) / tok.max_token_bytes());
  // (SmolLM2's longest token is 162 bytes of repeated characters, which sets its bound.)
  EXPECT_GT(tok.min_token_count(words), 500) << name;
}

TEST(MinTokenCount, IsALowerBoundForEveryTokenizerKind) {
  const auto dir = models_dir();
  for (const auto& path : {dir / "stories260K" / "stories260K.gguf", dir / "stories260K" / "tok512.model",
                           dir / "stories260K" / "tok512.bin", dir / "smollm2-135m-tokenizer",
                           dir / "llama2-tiny-random" / "llama-2-tiny-random.gguf"}) {
    auto tok = load_tokenizer(path, path.extension() == ".bin" ? 512 : 0);
    ASSERT_TRUE(tok.has_value()) << path << ": " << tok.error().what();
    expect_lower_bound(**tok, path.string());
  }
}

}  // namespace
}  // namespace troupe
