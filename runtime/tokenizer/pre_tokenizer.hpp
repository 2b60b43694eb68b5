#pragma once
// Pre-tokenization for byte-level BPE: splits text into words before merges, as the Hugging Face
// pre_tokenizer or llama.cpp's tokenizer.ggml.pre does. The regexes are hand-written matchers of
// the few patterns real models use, so no regex engine is needed.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// The split patterns troupe implements.
enum class split_pattern {
  gpt2,    ///< 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  llama3,  ///< (?i:'s|...|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  qwen2,   ///< as llama3 with \p{N} (one digit per word)
  digit,   ///< \p{N}: every digit on its own
};

/// The pattern a Hugging Face Split regex spells, if troupe implements it.
std::optional<split_pattern> split_pattern_from_regex(std::string_view regex);

/// A sequence of splitting steps, applied in order to every word the previous step produced.
class pre_tokenizer {
 public:
  /// Splits each word at the matches of pattern; matches and the text between them are words.
  void add_split(split_pattern pattern);
  /// Hugging Face Digits: digits apart from other text, each on its own when individual.
  void add_digits(bool individual);
  /// Hugging Face ByteLevel(add_prefix_space): a space before every word that does not start with one.
  void add_prefix_space();
  bool empty() const noexcept { return steps_.empty(); }

  /// The words of text.
  std::vector<std::string> split(std::string_view text) const;

 private:
  enum class step_kind { split, digits, prefix_space };
  struct step {
    step_kind kind;
    split_pattern pattern = split_pattern::gpt2;
    bool individual = true;
  };
  std::vector<step> steps_;
};

}  // namespace troupe
