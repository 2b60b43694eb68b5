#pragma once
// Tokenizers: SentencePiece-style BPE (GGUF `llama` vocab, tokenizer.model, llama2.c tokenizer.bin)
// with byte fallback, and byte-level BPE (tokenizer.json, GGUF `gpt2` vocab) with its pre-tokenizer.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe {

namespace format {
class gguf_file;
}
struct model_weights;

class tokenizer {
 public:
  virtual ~tokenizer() = default;

  /// Token ids of text; no BOS/EOS added. With parse_special, text of special/added tokens
  /// (e.g. "<|im_start|>") maps to their ids where the format does so (always for tokenizer.json).
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const = 0;
  /// The bytes a token stands for (byte-fallback tokens give their byte, SPM's "▁" gives a space;
  /// special tokens give their text). Concatenating these is the raw decode.
  virtual std::string token_bytes(int32_t id) const = 0;
  /// The vocabulary string of a token, as stored in the file.
  virtual std::string piece(int32_t id) const = 0;
  /// Whether id is a control/special token (BOS, EOS, <|im_end|> ...).
  virtual bool is_special(int32_t id) const = 0;

  /// What id contributes to decode(): token_bytes(id), except that tokens SentencePiece decodes
  /// invisibly (control tokens such as <s>) give "".
  virtual std::string decode_bytes(int32_t id) const { return token_bytes(id); }

  /// Full decode: decode_bytes concatenated; for SentencePiece models the dummy-prefix space of the
  /// first token is removed, as SentencePiece and llama.cpp do.
  virtual std::string decode(std::span<const int32_t> ids) const;

  /// Ids for a generation prompt: BOS first when the model asks for it (add_bos()), then encode(text).
  std::vector<int32_t> encode_prompt(std::string_view text, bool parse_special = false) const;

  /// A lower bound on encode(text, parse_special).size(), in one pass over text without allocating:
  /// no token stands for more input bytes than its longest vocabulary entry. A server rejects a prompt
  /// that cannot fit the context with it before spending the time and memory to tokenize it.
  virtual int64_t min_token_count(std::string_view text) const;
  /// The most input bytes one token can stand for (the longest token_bytes/piece; at least 1).
  int64_t max_token_bytes() const;

 protected:
  /// The fewest tokens that can cover `bytes` bytes of (normalized) input.
  int64_t min_tokens_for_bytes(int64_t bytes) const {
    const int64_t longest = max_token_bytes();
    return (bytes + longest - 1) / longest;
  }

 public:

  int32_t n_vocab() const noexcept { return n_vocab_; }
  int32_t bos_id() const noexcept { return bos_id_; }   ///< -1 if none
  int32_t eos_id() const noexcept { return eos_id_; }   ///< -1 if none
  /// Every id that ends generation (EOS, end-of-turn tokens such as <|eot_id|> or <|im_end|>).
  const std::vector<int32_t>& stop_ids() const noexcept { return stop_ids_; }
  bool add_bos() const noexcept { return add_bos_; }
  /// Whether the model's metadata asks for EOS after the input (encode_prompt does not add it:
  /// a generation prompt must not end the sequence).
  bool add_eos() const noexcept { return add_eos_; }
  /// Whether decoding strips the dummy-prefix space of the first token (SentencePiece models).
  bool strips_leading_space() const noexcept { return strip_leading_space_; }
  /// The chat template text from the model's metadata ("" if none).
  const std::string& chat_template() const noexcept { return chat_template_; }
  /// "spm" or "bpe".
  virtual std::string_view kind() const noexcept = 0;

 protected:
  int32_t n_vocab_ = 0;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  std::vector<int32_t> stop_ids_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool strip_leading_space_ = false;
  std::string chat_template_;

 private:
  mutable std::atomic<int64_t> max_token_bytes_{0};  ///< computed on first use; 0: not yet
};

/// Streaming detokenization: push ids one at a time and get text that never ends inside a UTF-8
/// character (incomplete bytes wait for the next token). Strips the dummy-prefix space at the
/// start of the stream when the tokenizer does.
class stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& tok, bool at_start = true);
  /// Text completed by this token (may be empty).
  std::string push(int32_t id);
  /// Whatever is still held back (invalid or incomplete UTF-8 at the end), as replacement chars.
  std::string flush();

 private:
  const tokenizer* tok_;
  std::string pending_;
  bool at_start_;
};

/// The tokenizer stored in a GGUF file's tokenizer.ggml.* metadata.
expected<std::unique_ptr<tokenizer>> load_tokenizer(const format::gguf_file& gguf);
/// A tokenizer file or a directory holding one: tokenizer.json, tokenizer.model (SentencePiece
/// ModelProto), or a llama2.c tokenizer.bin / tok*.bin (which needs n_vocab: pass the model's).
expected<std::unique_ptr<tokenizer>> load_tokenizer(const std::filesystem::path& path,
                                                    int32_t n_vocab_hint = 0);
/// The tokenizer that goes with a loaded model (from its GGUF, or its tokenizer_path).
expected<std::unique_ptr<tokenizer>> load_tokenizer(const model_weights& model);

}  // namespace troupe
