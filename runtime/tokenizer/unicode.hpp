#pragma once
// UTF-8 and the few Unicode properties the tokenizers need (letters, numbers, whitespace), plus
// GPT-2's byte <-> printable-character mapping. Internal to runtime/tokenizer.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::unicode {

/// Inclusive code point range of a generated category table.
struct code_point_range {
  uint32_t lo;
  uint32_t hi;
};

namespace detail {
extern const code_point_range letter_ranges[];
extern const size_t letter_ranges_size;
extern const code_point_range number_ranges[];
extern const size_t number_ranges_size;
}  // namespace detail

/// U+FFFD, what invalid UTF-8 decodes to.
inline constexpr uint32_t replacement_char = 0xFFFD;

/// Length of the UTF-8 sequence that starts with byte b (1 for invalid lead bytes, so that a
/// scan always advances).
size_t utf8_len(uint8_t b) noexcept;
/// Decodes the code point at text[pos], advancing pos; invalid or truncated sequences give
/// replacement_char and advance one byte.
uint32_t next_code_point(std::string_view text, size_t& pos) noexcept;
/// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, uint32_t cp);
/// All code points of text (invalid bytes become replacement_char).
std::vector<uint32_t> code_points(std::string_view text);
/// Splits text into its UTF-8 characters (an invalid byte is a character of its own).
std::vector<std::string_view> utf8_chars(std::string_view text);

/// Unicode general category L* (\p{L}).
bool is_letter(uint32_t cp) noexcept;
/// Unicode general category N* (\p{N}; also Rust's char::is_numeric).
bool is_number(uint32_t cp) noexcept;
/// Unicode White_Space property (\s in the pre-tokenizer regexes).
bool is_whitespace(uint32_t cp) noexcept;

/// GPT-2 byte-level alphabet: the printable character standing for byte b, as UTF-8.
const std::string& byte_to_char(uint8_t b);
/// Inverse of byte_to_char on one code point; -1 when cp stands for no byte.
int char_to_byte(uint32_t cp) noexcept;

/// Number of bytes at the end of text that begin a UTF-8 character whose remaining bytes have not
/// arrived yet (0 when text ends on a character boundary or with invalid bytes).
size_t incomplete_utf8_tail(std::string_view text) noexcept;
/// text with every invalid or incomplete UTF-8 sequence replaced by U+FFFD.
std::string sanitize_utf8(std::string_view text);

}  // namespace troupe::unicode
