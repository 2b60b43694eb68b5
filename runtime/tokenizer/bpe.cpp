#include "runtime/tokenizer/bpe.hpp"

#include <algorithm>
#include <queue>

#include "runtime/tokenizer/unicode.hpp"

namespace troupe {

expected<std::unique_ptr<tokenizer>> bpe_tokenizer::create(bpe_vocab v, const std::string& source) {
  const size_t n = v.tokens.size();
  if (n == 0) return make_error(errc::bad_format, source + ": the vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX)) return make_error(errc::bad_format, source + ": vocabulary too large");
  if (!v.types.empty() && v.types.size() != n) {
    return make_error(errc::bad_format, source + ": " + std::to_string(v.types.size()) + " token types for " +
                                            std::to_string(n) + " tokens");
  }
  std::unique_ptr<bpe_tokenizer> t(new bpe_tokenizer());
  const auto in_range = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n ? id : -1; };
  t->n_vocab_ = static_cast<int32_t>(n);
  t->tokens_ = std::move(v.tokens);
  t->types_ = v.types.empty() ? std::vector<piece_type>(n, piece_type::normal) : std::move(v.types);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& tok = t->tokens_[i];
    if (tok.empty()) continue;
    switch (t->types_[i]) {
      case piece_type::control: t->literals_.add(tok, id, !v.literals_always); break;
      case piece_type::user_defined: t->literals_.add(tok, id, false); break;
      case piece_type::unknown: break;
      default: t->token_ids_.emplace(tok, id); break;
    }
  }
  t->byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    auto it = t->token_ids_.find(unicode::byte_to_char(static_cast<uint8_t>(b)));
    if (it != t->token_ids_.end()) t->byte_ids_[b] = it->second;
  }
  std::string joined;
  for (size_t rank = 0; rank < v.merges.size(); ++rank) {
    const auto& [a, b] = v.merges[rank];
    auto ia = t->token_ids_.find(a);
    auto ib = t->token_ids_.find(b);
    joined = a;
    joined += b;
    auto ij = t->token_ids_.find(joined);
    // Merges naming tokens the vocabulary lacks cannot fire; Hugging Face rejects such files,
    // llama.cpp skips them: skipping keeps the others usable.
    if (ia == t->token_ids_.end() || ib == t->token_ids_.end() || ij == t->token_ids_.end()) continue;
    t->merges_.emplace(pair_key(ia->second, ib->second), merge_rule{static_cast<int32_t>(rank), ij->second});
  }
  t->pre_ = std::move(v.pre);
  t->ignore_merges_ = v.ignore_merges;
  t->literals_always_ = v.literals_always;
  t->unk_id_ = in_range(v.unk_id);
  t->bos_id_ = in_range(v.bos_id);
  t->eos_id_ = in_range(v.eos_id);
  t->add_bos_ = v.add_bos && t->bos_id_ >= 0;
  t->add_eos_ = v.add_eos && t->eos_id_ >= 0;
  t->chat_template_ = std::move(v.chat_template);
  const bpe_tokenizer& self = *t;
  t->stop_ids_ = collect_stop_ids(t->eos_id_, [&self](std::string_view s) -> int32_t {
    for (int32_t id = 0; id < self.n_vocab_; ++id) {
      if (self.types_[id] != piece_type::normal && self.tokens_[id] == s) return id;
    }
    return -1;
  });
  for (int32_t id : v.extra_stop_ids) {
    if (in_range(id) >= 0 && std::find(t->stop_ids_.begin(), t->stop_ids_.end(), id) == t->stop_ids_.end()) {
      t->stop_ids_.push_back(id);
    }
  }
  return std::unique_ptr<tokenizer>(std::move(t));
}

std::vector<int32_t> bpe_tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  for (const auto& f : literals_.split(text, parse_special || literals_always_)) {
    if (f.id >= 0) {
      out.push_back(f.id);
      continue;
    }
    for (const std::string& word : pre_.split(f.text)) encode_word(word, out);
  }
  return out;
}

void bpe_tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    std::string spelled;
    for (char c : word) spelled += unicode::byte_to_char(static_cast<uint8_t>(c));
    if (auto it = token_ids_.find(spelled); it != token_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per byte, linked so that merges are O(1); a heap of candidate pairs keyed by
  // (rank, position) applies the lowest rank first, leftmost among equals, as Hugging Face does.
  struct symbol {
    int32_t id;
    int prev;
    int next;
  };
  std::vector<symbol> syms;
  syms.reserve(word.size());
  for (char c : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    const int idx = static_cast<int>(syms.size());
    syms.push_back(symbol{id, idx - 1, idx + 1});
  }
  syms.back().next = -1;

  struct candidate {
    int32_t rank;
    int pos;
    int32_t left_id;
    int32_t right_id;
    int32_t merged;
    bool operator>(const candidate& o) const noexcept { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
  auto try_add = [&](int left) {
    if (left < 0) return;
    const int right = syms[left].next;
    if (right < 0 || syms[left].id < 0 || syms[right].id < 0) return;
    auto it = merges_.find(pair_key(syms[left].id, syms[right].id));
    if (it == merges_.end()) return;
    queue.push(candidate{it->second.rank, left, syms[left].id, syms[right].id, it->second.id});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) try_add(i);

  while (!queue.empty()) {
    const candidate c = queue.top();
    queue.pop();
    symbol& l = syms[c.pos];
    // Stale when either side has changed since the pair was queued (ids pin down both sides).
    if (l.id != c.left_id || l.next < 0 || syms[l.next].id != c.right_id) continue;
    const int right = l.next;
    l.id = c.merged;
    l.next = syms[right].next;
    syms[right].id = -2;  // merged away
    if (l.next >= 0) syms[l.next].prev = c.pos;
    try_add(l.prev);
    try_add(c.pos);
  }

  for (int i = 0; i >= 0; i = syms[i].next) {
    if (syms[i].id >= 0) {
      out.push_back(syms[i].id);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);  // a byte the vocabulary cannot spell
    }
  }
}

std::string bpe_tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab_) return {};
  const std::string& tok = tokens_[id];
  if (types_[id] != piece_type::normal && types_[id] != piece_type::unused) return tok;
  std::string out;
  out.reserve(tok.size());
  for (size_t pos = 0; pos < tok.size();) {
    const uint32_t cp = unicode::next_code_point(tok, pos);
    const int b = unicode::char_to_byte(cp);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      unicode::append_utf8(out, cp);  // not in the byte alphabet: keep the character itself
    }
  }
  return out;
}

std::string bpe_tokenizer::piece(int32_t id) const {
  return id >= 0 && id < n_vocab_ ? tokens_[id] : std::string();
}

bool bpe_tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= n_vocab_) return false;
  return types_[id] == piece_type::control || types_[id] == piece_type::unknown;
}

}  // namespace troupe
