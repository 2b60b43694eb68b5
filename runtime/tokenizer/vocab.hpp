#pragma once
// Pieces shared by the tokenizer implementations: token types, heterogeneous string lookup, the
// matcher that finds added/special tokens written literally in a text, and the stop-id rule.
// Internal to runtime/tokenizer.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe {

/// SentencePiece's piece types, which GGUF's tokenizer.ggml.token_type reuses.
enum class piece_type : uint8_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

/// piece_type from a stored integer; anything unknown counts as normal.
piece_type piece_type_from_int(int64_t v) noexcept;

/// Hash that lets an unordered_map<std::string, ...> be searched with a string_view.
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using piece_map = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

/// Finds added/special tokens written literally in a text (leftmost, then longest match).
class literal_matcher {
 public:
  /// A run of text, or one matched token (id >= 0).
  struct fragment {
    std::string_view text;
    int32_t id = -1;
  };
  /// Registers text as a literal spelling of id; when only_if_special, it is matched only when the
  /// caller asks for special-token parsing.
  void add(std::string text, int32_t id, bool only_if_special);
  bool empty() const noexcept { return entries_.empty(); }
  /// text cut into plain runs and matched tokens, in order.
  std::vector<fragment> split(std::string_view text, bool parse_special) const;

 private:
  struct entry {
    std::string text;
    int32_t id;
    bool only_if_special;
  };
  std::vector<entry> entries_;
  std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);
};

/// EOS plus the end-of-turn tokens of the vocabulary (<|eot_id|>, <|im_end|>, ...), without
/// duplicates. find gives the id of a special token's text, or -1.
std::vector<int32_t> collect_stop_ids(int32_t eos_id, const std::function<int32_t(std::string_view)>& find);

}  // namespace troupe
