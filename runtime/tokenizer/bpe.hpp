#pragma once
// Byte-level BPE (GPT-2 style): text is split into words by a pre-tokenizer, each word's bytes are
// spelled in GPT-2's printable byte alphabet, and merges apply lowest rank first.

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/tokenizer/pre_tokenizer.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "runtime/tokenizer/vocab.hpp"

namespace troupe {

/// Everything a byte-level BPE tokenizer is built from, whatever file it came from.
struct bpe_vocab {
  /// One entry per id: byte-level spelling for normal tokens, literal text for added ones ("" for
  /// ids the file leaves out).
  std::vector<std::string> tokens;
  /// normal: a byte-level model token; control: a special token (literal text, matched in input
  /// with parse_special, or always when literals_always); user_defined: an added token matched always.
  std::vector<piece_type> types;
  std::vector<std::pair<std::string, std::string>> merges;  ///< in rank order
  pre_tokenizer pre;
  bool ignore_merges = false;    ///< a word that is itself a token is not merged (Llama-3)
  bool literals_always = false;  ///< Hugging Face: added tokens are recognised in every input
  int32_t unk_id = -1;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  std::vector<int32_t> extra_stop_ids;  ///< more end-of-generation ids named by the model config
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;
};

class bpe_tokenizer final : public tokenizer {
 public:
  /// Checks the vocabulary and builds the merge table; errors name source.
  static expected<std::unique_ptr<tokenizer>> create(bpe_vocab vocab, const std::string& source);

  std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const override;
  std::string token_bytes(int32_t id) const override;
  std::string piece(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::string_view kind() const noexcept override { return "bpe"; }

 private:
  bpe_tokenizer() = default;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  struct merge_rule {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) noexcept {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::vector<std::string> tokens_;
  std::vector<piece_type> types_;
  piece_map token_ids_;  ///< byte-level spelling -> id, normal tokens only
  std::unordered_map<uint64_t, merge_rule> merges_;
  std::array<int32_t, 256> byte_ids_{};
  pre_tokenizer pre_;
  literal_matcher literals_;
  bool ignore_merges_ = false;
  bool literals_always_ = false;
  int32_t unk_id_ = -1;
};

}  // namespace troupe
