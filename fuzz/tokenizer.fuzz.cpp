// Tokenizers on arbitrary input: encode any bytes (with and without special-token parsing), decode any
// ids (negative, past the vocabulary), and stream-decode them. The tokenizers are real ones, loaded
// once: SentencePiece BPE from stories260K's and llama-2-tiny-random's GGUF, byte-level BPE from
// SmolLM2's tokenizer.json.
//
// Input: byte 0 picks the tokenizer (bits 0-1), decode instead of encode (bit 2), parse_special (bit 3);
// the rest is the text, or little-endian int32 ids.
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "runtime/format/gguf.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

using namespace troupe;

namespace {

std::unique_ptr<tokenizer> from_gguf(const std::filesystem::path& path) {
  auto file = format::gguf_file::open(path);
  if (!file) std::abort();
  auto tok = load_tokenizer(**file);
  if (!tok) std::abort();
  return std::move(*tok);
}

const std::vector<std::unique_ptr<tokenizer>>& tokenizers() {
  static const auto all = [] {
    std::vector<std::unique_ptr<tokenizer>> t;
    t.push_back(from_gguf(fuzz::shared_models() / "stories260K/stories260K.gguf"));
    t.push_back(from_gguf(fuzz::shared_models() / "llama2-tiny-random/llama-2-tiny-random.gguf"));
    auto bpe = load_tokenizer(fuzz::shared_models() / "smollm2-135m-tokenizer/tokenizer.json");
    if (!bpe) std::abort();
    t.push_back(std::move(*bpe));
    return t;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const auto& all = tokenizers();
  const tokenizer& tok = *all[(mode & 3) % all.size()];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode & 4) {
    std::vector<int32_t> ids(rest.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    (void)tok.decode(ids);
    stream_decoder stream(tok);
    for (int32_t id : ids) {
      (void)stream.push(id);
      (void)tok.piece(id);
      (void)tok.is_special(id);
    }
    (void)stream.flush();
  } else {
    const auto ids = tok.encode_prompt(rest, (mode & 8) != 0);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.n_vocab()) std::abort();  // encode must only give ids of the vocabulary
    (void)tok.decode(ids);
  }
  return 0;
}
