#include "runtime/tokenizer/unicode.hpp"

#include <algorithm>
#include <array>

namespace troupe::unicode {

namespace {

bool in_ranges(const code_point_range* ranges, size_t n, uint32_t cp) noexcept {
  const code_point_range* end = ranges + n;
  const code_point_range* it =
      std::upper_bound(ranges, end, cp, [](uint32_t v, const code_point_range& r) { return v < r.lo; });
  return it != ranges && cp <= (it - 1)->hi;
}

bool is_continuation(uint8_t b) noexcept { return (b & 0xC0) == 0x80; }

// Length of a valid UTF-8 sequence at text[pos], or 0 when the bytes there are invalid; sets
// *incomplete when the sequence is valid so far but runs past the end of text, and *bad to the
// length of the maximal invalid subpart (what one U+FFFD replaces).
size_t valid_sequence(std::string_view text, size_t pos, bool* incomplete, size_t* bad = nullptr) noexcept {
  *incomplete = false;
  if (bad) *bad = 1;
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (b0 < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (rejects overlongs, surrogates)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    if (bad) *bad = k;
    if (pos + k >= text.size()) {
      *incomplete = true;
      return 0;
    }
    const auto b = static_cast<uint8_t>(text[pos + k]);
    if (k == 1 ? (b < lo || b > hi) : !is_continuation(b)) return 0;
  }
  return len;
}

struct byte_alphabet {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 512> to_byte;  // GPT-2's alphabet lies below U+0200
  byte_alphabet() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
      append_utf8(to_char[b], cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const byte_alphabet& alphabet() {
  static const byte_alphabet a;
  return a;
}

}  // namespace

size_t utf8_len(uint8_t b) noexcept {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

uint32_t next_code_point(std::string_view text, size_t& pos) noexcept {
  bool incomplete = false;
  const size_t len = valid_sequence(text, pos, &incomplete);
  if (len == 0) {
    ++pos;
    return replacement_char;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(text.data() + pos);
  pos += len;
  switch (len) {
    case 1: return p[0];
    case 2: return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3: return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::vector<uint32_t> code_points(std::string_view text) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) out.push_back(next_code_point(text, pos));
  return out;
}

std::vector<std::string_view> utf8_chars(std::string_view text) {
  std::vector<std::string_view> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    next_code_point(text, pos);
    out.push_back(text.substr(start, pos - start));
  }
  return out;
}

bool is_letter(uint32_t cp) noexcept {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(detail::letter_ranges, detail::letter_ranges_size, cp);
}

bool is_number(uint32_t cp) noexcept {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(detail::number_ranges, detail::number_ranges_size, cp);
}

bool is_whitespace(uint32_t cp) noexcept {
  // The White_Space property is short and stable, so it is listed here rather than generated.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

const std::string& byte_to_char(uint8_t b) { return alphabet().to_char[b]; }

int char_to_byte(uint32_t cp) noexcept {
  return cp < 512 ? alphabet().to_byte[cp] : -1;
}

size_t incomplete_utf8_tail(std::string_view text) noexcept {
  // A UTF-8 character is at most 4 bytes, so only the last 3 bytes can start an unfinished one.
  const size_t first = text.size() > 3 ? text.size() - 3 : 0;
  for (size_t pos = first; pos < text.size();) {
    if (is_continuation(static_cast<uint8_t>(text[pos]))) {
      ++pos;
      continue;
    }
    bool incomplete = false;
    const size_t len = valid_sequence(text, pos, &incomplete);
    if (incomplete) return text.size() - pos;
    pos += len == 0 ? 1 : len;
  }
  return 0;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    bool incomplete = false;
    size_t bad = 1;
    const size_t len = valid_sequence(text, pos, &incomplete, &bad);
    if (len == 0) {
      append_utf8(out, replacement_char);
      pos += bad;
    } else {
      out.append(text.substr(pos, len));
      pos += len;
    }
  }
  return out;
}

}  // namespace troupe::unicode
