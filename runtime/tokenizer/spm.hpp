#pragma once
// SentencePiece-style BPE with byte fallback: merges the adjacent pair whose joined piece scores
// highest until none is left; characters outside the vocabulary become <0xNN> byte tokens.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "runtime/tokenizer/vocab.hpp"

namespace troupe {

/// How text is prepared before merging (SentencePiece's NormalizerSpec, llama.cpp's add_space_prefix).
struct spm_normalizer {
  bool add_dummy_prefix = true;           ///< a "▁" before non-empty text
  bool remove_extra_whitespaces = false;  ///< strip leading/trailing spaces, collapse runs of them
  bool escape_whitespaces = true;         ///< ' ' -> "▁"
};

/// Everything an SPM tokenizer is built from, whatever file it came from.
struct spm_vocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;        ///< empty or one per piece
  std::vector<piece_type> types;    ///< empty or one per piece
  int32_t unk_id = 0;
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  bool add_bos = true;
  bool add_eos = false;
  bool byte_fallback = true;
  spm_normalizer normalizer;
  std::string chat_template;
};

class spm_tokenizer final : public tokenizer {
 public:
  /// Checks the vocabulary (non-empty, ids in range) and builds the lookup tables; errors name source.
  static expected<std::unique_ptr<tokenizer>> create(spm_vocab vocab, const std::string& source);

  std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode_bytes(int32_t id) const override;
  std::string piece(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::string_view kind() const noexcept override { return "spm"; }
  /// With remove_extra_whitespaces, the bytes the normalizer keeps: runs of spaces count once, and
  /// leading spaces and trailing spaces/"▁" not at all.
  int64_t min_token_count(std::string_view text) const override;

 private:
  spm_tokenizer() = default;
  /// The normalized text of one plain fragment; first says whether it starts the input.
  std::string normalize(std::string_view text, bool first) const;
  /// Merges one normalized fragment and appends its ids.
  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
  void append_unknown(std::string_view chars, std::vector<int32_t>& out) const;
  bool mergeable(int32_t id) const noexcept;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<piece_type> types_;
  piece_map piece_ids_;
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
  bool byte_fallback_ = true;
  spm_normalizer normalizer_;
  literal_matcher user_defined_;  ///< matched in every input, frozen during merges
  literal_matcher control_;       ///< matched only with parse_special
};

}  // namespace troupe
