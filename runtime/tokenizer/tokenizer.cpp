#include "runtime/tokenizer/tokenizer.hpp"

#include <algorithm>

#include "runtime/tokenizer/unicode.hpp"

namespace troupe {

std::string tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  bool at_start = strip_leading_space_;
  for (int32_t id : ids) {
    std::string bytes = decode_bytes(id);
    if (bytes.empty()) continue;
    // The dummy prefix sits on the first visible token (control tokens before it decode to "").
    if (at_start && bytes[0] == ' ') bytes.erase(0, 1);
    at_start = false;
    out += bytes;
  }
  return out;
}

std::vector<int32_t> tokenizer::encode_prompt(std::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_bos_ && bos_id_ >= 0) ids.push_back(bos_id_);
  std::vector<int32_t> body = encode(text, parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

int64_t tokenizer::max_token_bytes() const {
  int64_t longest = max_token_bytes_.load(std::memory_order_relaxed);
  if (longest > 0) return longest;
  longest = 1;
  for (int32_t id = 0; id < n_vocab_; ++id) {
    // The piece bounds what a token matches in the (normalized) input, token_bytes what it stands
    // for; the larger of the two bounds both.
    longest = std::max<int64_t>(longest, static_cast<int64_t>(std::max(piece(id).size(), token_bytes(id).size())));
  }
  max_token_bytes_.store(longest, std::memory_order_relaxed);  // every thread computes the same value
  return longest;
}

int64_t tokenizer::min_token_count(std::string_view text) const {
  return min_tokens_for_bytes(static_cast<int64_t>(text.size()));
}

stream_decoder::stream_decoder(const tokenizer& tok, bool at_start)
    : tok_(&tok), at_start_(at_start && tok.strips_leading_space()) {}

std::string stream_decoder::push(int32_t id) {
  std::string bytes = tok_->decode_bytes(id);
  if (bytes.empty()) return {};
  if (at_start_ && bytes[0] == ' ') bytes.erase(0, 1);
  at_start_ = false;
  pending_ += bytes;
  // Hold back a character whose bytes are still arriving (byte-fallback tokens carry one byte
  // each); anything else that is not UTF-8 can never become valid and goes out as U+FFFD.
  const size_t held = unicode::incomplete_utf8_tail(pending_);
  std::string out = unicode::sanitize_utf8(std::string_view(pending_).substr(0, pending_.size() - held));
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string stream_decoder::flush() {
  std::string out = unicode::sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace troupe
