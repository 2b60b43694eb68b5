#include "runtime/tokenizer/pre_tokenizer.hpp"

#include "runtime/tokenizer/unicode.hpp"

namespace troupe {

namespace {

using unicode::is_letter;
using unicode::is_number;
using unicode::is_whitespace;

bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }
bool is_other(uint32_t cp) { return !is_whitespace(cp) && !is_letter(cp) && !is_number(cp); }

uint32_t ascii_lower(uint32_t cp) { return cp < 0x80 ? (cp | 0x20) : cp; }

// 's|'t|'re|'ve|'m|'ll|'d at i, case-insensitive for the Llama-3 / Qwen2 patterns.
size_t match_contraction(const std::vector<uint32_t>& cp, size_t i, bool any_case) {
  if (cp[i] != '\'' || i + 1 >= cp.size()) return 0;
  auto at = [&](size_t k) -> uint32_t {
    if (i + k >= cp.size()) return 0;
    return any_case ? ascii_lower(cp[i + k]) : cp[i + k];
  };
  const uint32_t c1 = at(1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  const uint32_t c2 = at(2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

size_t run(const std::vector<uint32_t>& cp, size_t i, bool (*pred)(uint32_t)) {
  size_t j = i;
  while (j < cp.size() && pred(cp[j])) ++j;
  return j - i;
}

// \s+(?!\S) then \s+: a whitespace run, leaving its last character to the next word when a
// non-space follows (so " world" keeps its space).
size_t match_spaces(const std::vector<uint32_t>& cp, size_t i) {
  const size_t n = run(cp, i, is_whitespace);
  if (n == 0) return 0;
  if (i + n == cp.size() || n == 1) return n;
  return n - 1;
}

size_t match_gpt2(const std::vector<uint32_t>& cp, size_t i) {
  if (size_t n = match_contraction(cp, i, false)) return n;
  const size_t sp = cp[i] == ' ' && i + 1 < cp.size() ? 1 : 0;
  if (size_t n = run(cp, i + sp, is_letter)) return sp + n;
  if (size_t n = run(cp, i + sp, is_number)) return sp + n;
  if (size_t n = run(cp, i + sp, is_other)) return sp + n;
  return match_spaces(cp, i);
}

size_t match_llama3(const std::vector<uint32_t>& cp, size_t i, size_t max_digits) {
  if (size_t n = match_contraction(cp, i, true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!is_newline(cp[i]) && !is_letter(cp[i]) && !is_number(cp[i]) && i + 1 < cp.size()) {
    if (size_t n = run(cp, i + 1, is_letter)) return 1 + n;
  }
  if (size_t n = run(cp, i, is_letter)) return n;
  // \p{N}{1,max}
  if (size_t n = run(cp, i, is_number)) return n < max_digits ? n : max_digits;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t sp = cp[i] == ' ' && i + 1 < cp.size() ? 1 : 0;
  if (size_t n = run(cp, i + sp, is_other)) {
    const size_t end = i + sp + n;
    return sp + n + run(cp, end, is_newline);
  }
  // \s*[\r\n]+: the whitespace run up to and including its last newline.
  const size_t ws = run(cp, i, is_whitespace);
  for (size_t k = ws; k > 0; --k) {
    if (is_newline(cp[i + k - 1])) return k;
  }
  return match_spaces(cp, i);
}

size_t match(split_pattern p, const std::vector<uint32_t>& cp, size_t i) {
  switch (p) {
    case split_pattern::gpt2: return match_gpt2(cp, i);
    case split_pattern::llama3: return match_llama3(cp, i, 3);
    case split_pattern::qwen2: return match_llama3(cp, i, 1);
    case split_pattern::digit: return is_number(cp[i]) ? 1 : 0;
  }
  return 0;
}

// Splits word at the pattern's matches (Hugging Face's "Isolated" behaviour: matches and the
// unmatched text between them each become a word).
void split_word(split_pattern p, std::string_view word, std::vector<std::string>& out) {
  std::vector<uint32_t> cps;
  std::vector<size_t> offsets;  // byte offset of each code point, plus the end
  for (size_t pos = 0; pos < word.size();) {
    offsets.push_back(pos);
    cps.push_back(unicode::next_code_point(word, pos));
  }
  offsets.push_back(word.size());
  size_t gap_start = 0;
  for (size_t i = 0; i < cps.size();) {
    const size_t n = match(p, cps, i);
    if (n == 0) {
      ++i;
      continue;
    }
    if (gap_start < i) out.emplace_back(word.substr(offsets[gap_start], offsets[i] - offsets[gap_start]));
    out.emplace_back(word.substr(offsets[i], offsets[i + n] - offsets[i]));
    i += n;
    gap_start = i;
  }
  if (gap_start < cps.size()) out.emplace_back(word.substr(offsets[gap_start]));
}

void split_digits(bool individual, std::string_view word, std::vector<std::string>& out) {
  size_t start = 0;
  bool in_digits = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t at = pos;
    const bool digit = is_number(unicode::next_code_point(word, pos));
    if (at > start && (digit != in_digits || (digit && individual))) {
      out.emplace_back(word.substr(start, at - start));
      start = at;
    }
    in_digits = digit;
  }
  if (start < word.size()) out.emplace_back(word.substr(start));
}

}  // namespace

std::optional<split_pattern> split_pattern_from_regex(std::string_view regex) {
  if (regex == R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)" ||
      regex == R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))") {
    return split_pattern::gpt2;
  }
  if (regex == R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)") {
    return split_pattern::llama3;
  }
  if (regex == R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)") {
    return split_pattern::qwen2;
  }
  if (regex == R"(\p{N})") return split_pattern::digit;
  return std::nullopt;
}

void pre_tokenizer::add_split(split_pattern pattern) {
  steps_.push_back(step{step_kind::split, pattern});
}

void pre_tokenizer::add_digits(bool individual) {
  steps_.push_back(step{step_kind::digits, split_pattern::digit, individual});
}

void pre_tokenizer::add_prefix_space() { steps_.push_back(step{step_kind::prefix_space}); }

std::vector<std::string> pre_tokenizer::split(std::string_view text) const {
  std::vector<std::string> words;
  if (text.empty()) return words;
  words.emplace_back(text);
  std::vector<std::string> next;
  for (const step& s : steps_) {
    next.clear();
    for (std::string& w : words) {
      switch (s.kind) {
        case step_kind::split: split_word(s.pattern, w, next); break;
        case step_kind::digits: split_digits(s.individual, w, next); break;
        case step_kind::prefix_space:
          if (w.empty() || w[0] != ' ') w.insert(w.begin(), ' ');
          next.push_back(std::move(w));
          break;
      }
    }
    words.swap(next);
  }
  return words;
}

}  // namespace troupe
