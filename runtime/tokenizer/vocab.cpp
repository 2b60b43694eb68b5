#include "runtime/tokenizer/vocab.hpp"

#include <algorithm>

namespace troupe {

piece_type piece_type_from_int(int64_t v) noexcept {
  return v >= 1 && v <= 6 ? static_cast<piece_type>(v) : piece_type::normal;
}

void literal_matcher::add(std::string text, int32_t id, bool only_if_special) {
  if (text.empty()) return;
  const auto first = static_cast<uint8_t>(text[0]);
  entries_.push_back(entry{std::move(text), id, only_if_special});
  auto& bucket = by_first_byte_[first];
  bucket.push_back(entries_.size() - 1);
  // Longest first, so the first hit at a position is the longest match there.
  std::stable_sort(bucket.begin(), bucket.end(),
                   [&](size_t a, size_t b) { return entries_[a].text.size() > entries_[b].text.size(); });
}

std::vector<literal_matcher::fragment> literal_matcher::split(std::string_view text, bool parse_special) const {
  std::vector<fragment> out;
  size_t plain_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const entry* hit = nullptr;
    for (size_t idx : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      const entry& e = entries_[idx];
      if (e.only_if_special && !parse_special) continue;
      if (text.substr(pos).starts_with(e.text)) {
        hit = &e;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    if (plain_start < pos) out.push_back(fragment{text.substr(plain_start, pos - plain_start)});
    out.push_back(fragment{text.substr(pos, hit->text.size()), hit->id});
    pos += hit->text.size();
    plain_start = pos;
  }
  if (plain_start < text.size()) out.push_back(fragment{text.substr(plain_start)});
  return out;
}

std::vector<int32_t> collect_stop_ids(int32_t eos_id, const std::function<int32_t(std::string_view)>& find) {
  // llama.cpp's end-of-generation set: chat formats end a turn with their own token, and a model
  // may emit any of these even when metadata names another EOS.
  static constexpr std::string_view end_tokens[] = {
      "<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>",
      "<end_of_turn>", "<|end|>", "<|return|>", "<|call|>",
  };
  std::vector<int32_t> ids;
  if (eos_id >= 0) ids.push_back(eos_id);
  for (std::string_view t : end_tokens) {
    const int32_t id = find(t);
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace troupe
