#include "runtime/tokenizer/spm.hpp"

#include <queue>
#include <unordered_map>

#include "runtime/tokenizer/unicode.hpp"

namespace troupe {

namespace {

constexpr std::string_view space_symbol = "\xE2\x96\x81";  // U+2581 "▁"

// The byte of a "<0xNN>" piece, or -1.
int parse_byte_piece(std::string_view p) {
  if (p.size() != 6 || !p.starts_with("<0x") || p[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_space_symbol(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.substr(pos).starts_with(space_symbol)) {
      out += ' ';
      pos += space_symbol.size();
    } else {
      out += piece[pos++];
    }
  }
  return out;
}

struct symbol {
  int prev;
  int next;
  size_t off;
  size_t len;
};

// A candidate merge of symbols left and right; the queue pops the highest score, then the
// leftmost pair, as SentencePiece's BPE does.
struct candidate {
  float score;
  int left;
  int right;
  size_t len;
};
struct candidate_order {
  bool operator()(const candidate& a, const candidate& b) const noexcept {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

expected<std::unique_ptr<tokenizer>> spm_tokenizer::create(spm_vocab v, const std::string& source) {
  const size_t n = v.pieces.size();
  if (n == 0) return make_error(errc::bad_format, source + ": the vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX)) return make_error(errc::bad_format, source + ": vocabulary too large");
  if (!v.scores.empty() && v.scores.size() != n) {
    return make_error(errc::bad_format, source + ": " + std::to_string(v.scores.size()) + " scores for " +
                                            std::to_string(n) + " pieces");
  }
  if (!v.types.empty() && v.types.size() != n) {
    return make_error(errc::bad_format, source + ": " + std::to_string(v.types.size()) + " token types for " +
                                            std::to_string(n) + " pieces");
  }
  std::unique_ptr<spm_tokenizer> t(new spm_tokenizer());
  const auto in_range = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n ? id : -1; };
  t->n_vocab_ = static_cast<int32_t>(n);
  t->pieces_ = std::move(v.pieces);
  t->scores_ = v.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(v.scores);
  t->types_ = v.types.empty() ? std::vector<piece_type>(n, piece_type::normal) : std::move(v.types);
  t->byte_ids_.fill(-1);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& p = t->pieces_[i];
    t->piece_ids_.emplace(p, id);  // the first of duplicate pieces wins
    switch (t->types_[i]) {
      case piece_type::byte:
        if (int b = parse_byte_piece(p); b >= 0 && t->byte_ids_[b] < 0) t->byte_ids_[b] = id;
        break;
      case piece_type::user_defined: t->user_defined_.add(p, id, false); break;
      case piece_type::control:
      case piece_type::unknown: t->control_.add(p, id, true); break;
      default: break;
    }
  }
  t->unk_id_ = in_range(v.unk_id);
  t->bos_id_ = in_range(v.bos_id);
  t->eos_id_ = in_range(v.eos_id);
  t->add_bos_ = v.add_bos && t->bos_id_ >= 0;
  t->add_eos_ = v.add_eos && t->eos_id_ >= 0;
  t->byte_fallback_ = v.byte_fallback;
  t->normalizer_ = v.normalizer;
  t->strip_leading_space_ = v.normalizer.add_dummy_prefix;
  t->chat_template_ = std::move(v.chat_template);
  const spm_tokenizer& self = *t;
  t->stop_ids_ = collect_stop_ids(t->eos_id_, [&self](std::string_view s) -> int32_t {
    auto it = self.piece_ids_.find(s);
    return it != self.piece_ids_.end() && self.is_special(it->second) ? it->second : -1;
  });
  return std::unique_ptr<tokenizer>(std::move(t));
}

bool spm_tokenizer::mergeable(int32_t id) const noexcept {
  // SentencePiece merges only into pieces of its "pieces_" table; control, unknown and byte
  // pieces never come out of a merge, so "<s>" in a text stays plain text.
  const piece_type t = types_[id];
  return t == piece_type::normal || t == piece_type::user_defined || t == piece_type::unused;
}

int64_t spm_tokenizer::min_token_count(std::string_view text) const {
  if (!normalizer_.remove_extra_whitespaces) return tokenizer::min_token_count(text);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (true) {  // what normalize() strips at the end
    if (text.ends_with(' ')) {
      text.remove_suffix(1);
    } else if (text.ends_with(space_symbol)) {
      text.remove_suffix(space_symbol.size());
    } else {
      break;
    }
  }
  int64_t kept = 0;
  bool prev_space = false;
  for (char c : text) {
    if (c != ' ' || !prev_space) ++kept;
    prev_space = c == ' ';
  }
  return min_tokens_for_bytes(kept);
}

std::string spm_tokenizer::normalize(std::string_view text, bool first) const {
  const bool collapse = normalizer_.remove_extra_whitespaces;
  if (collapse) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  }
  std::string out;
  if (text.empty()) return out;
  const std::string_view space = normalizer_.escape_whitespaces ? space_symbol : std::string_view(" ");
  if (first && normalizer_.add_dummy_prefix) out += space;
  bool prev_space = collapse;
  for (char c : text) {
    if (c == ' ') {
      if (!(collapse && prev_space)) out += space;
      prev_space = true;
    } else {
      out += c;
      prev_space = false;
    }
  }
  if (collapse) {
    // As SentencePiece: trailing space symbols go, including a literal "▁" of the input.
    while (out.size() >= space.size() && std::string_view(out).ends_with(space)) out.resize(out.size() - space.size());
  }
  return out;
}

std::vector<int32_t> spm_tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  std::vector<literal_matcher::fragment> fragments;
  if (parse_special && !control_.empty()) {
    fragments = control_.split(text, true);
  } else if (!text.empty()) {
    fragments.push_back(literal_matcher::fragment{text});
  }
  // As llama.cpp: text right after a special token gets its own dummy prefix.
  bool after_special = true;
  for (const auto& f : fragments) {
    if (f.id >= 0) {
      out.push_back(f.id);
      after_special = true;
      continue;
    }
    const std::string normalized = normalize(f.text, after_special);
    after_special = false;
    if (user_defined_.empty()) {
      encode_normalized(normalized, out);
      continue;
    }
    // User-defined pieces are found before merging and never merge with their neighbours.
    for (const auto& g : user_defined_.split(normalized, true)) {
      if (g.id >= 0) {
        out.push_back(g.id);
      } else {
        encode_normalized(g.text, out);
      }
    }
  }
  return out;
}

void spm_tokenizer::append_unknown(std::string_view chars, std::vector<int32_t>& out) const {
  if (byte_fallback_) {
    bool all = true;
    for (char c : chars) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
    if (all) {
      for (char c : chars) out.push_back(byte_ids_[static_cast<uint8_t>(c)]);
      return;
    }
  }
  if (unk_id_ >= 0) out.push_back(unk_id_);
}

void spm_tokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<symbol> syms;
  syms.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    unicode::next_code_point(text, pos);
    const int idx = static_cast<int>(syms.size());
    syms.push_back(symbol{idx - 1, idx + 1, start, pos - start});
  }
  syms.back().next = -1;

  std::priority_queue<candidate, std::vector<candidate>, candidate_order> queue;
  // Unused pieces may be merged through but not emitted: remember how they were built.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view joined = text.substr(syms[left].off, syms[left].len + syms[right].len);
    auto it = piece_ids_.find(joined);
    if (it == piece_ids_.end() || !mergeable(it->second)) return;
    queue.push(candidate{scores_[it->second], left, right, joined.size()});
    if (types_[it->second] == piece_type::unused) {
      rev_merge[joined] = {text.substr(syms[left].off, syms[left].len), text.substr(syms[right].off, syms[right].len)};
    }
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) try_add(static_cast<int>(i), static_cast<int>(i + 1));

  while (!queue.empty()) {
    const candidate c = queue.top();
    queue.pop();
    symbol& l = syms[c.left];
    symbol& r = syms[c.right];
    // Stale: one side was merged away or grew since this pair was queued.
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (l.next >= 0) syms[l.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }

  auto emit = [&](auto& self, std::string_view p) -> void {
    auto it = piece_ids_.find(p);
    if (it == piece_ids_.end() || !mergeable(it->second)) {
      append_unknown(p, out);
      return;
    }
    if (types_[it->second] == piece_type::unused) {
      if (auto rm = rev_merge.find(p); rm != rev_merge.end()) {
        self(self, rm->second.first);
        self(self, rm->second.second);
        return;
      }
    }
    out.push_back(it->second);
  };
  for (int i = 0; i >= 0; i = syms[i].next) emit(emit, text.substr(syms[i].off, syms[i].len));
}

std::string spm_tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab_) return {};
  const std::string& p = pieces_[id];
  switch (types_[id]) {
    case piece_type::byte:
      if (int b = parse_byte_piece(p); b >= 0) return std::string(1, static_cast<char>(b));
      return p;
    case piece_type::control:
    case piece_type::unknown: return p;
    default: return replace_space_symbol(p);
  }
}

std::string spm_tokenizer::decode_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab_) return {};
  switch (types_[id]) {
    case piece_type::control: return {};
    case piece_type::unknown: return " \xE2\x81\x87 ";  // SentencePiece's surface of <unk>: " ⁇ "
    default: return token_bytes(id);
  }
}

std::string spm_tokenizer::piece(int32_t id) const {
  return id >= 0 && id < n_vocab_ ? pieces_[id] : std::string();
}

bool spm_tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= n_vocab_) return false;
  return types_[id] == piece_type::control || types_[id] == piece_type::unknown;
}

}  // namespace troupe
