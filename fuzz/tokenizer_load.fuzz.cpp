// The tokenizer file loaders: tokenizer.json (byte-level BPE: model, added_tokens, pre_tokenizer),
// a SentencePiece tokenizer.model (ModelProto) and a llama2.c tokenizer.bin
// (runtime/tokenizer/load_hf.cpp, load_spm.cpp). A tokenizer that loads then encodes and decodes.
//
// Input: byte 0 picks the file kind (mod 3: tokenizer.json, tokenizer.model, tokenizer.bin); for
// tokenizer.bin bytes 1-2 are the vocabulary size the model would give; the rest is the file.
#include "fuzz/fuzz_support.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size < 3) return 0;
  static const char* const names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
  const int kind = data[0] % 3;
  const int32_t n_vocab = kind == 2 ? data[1] | data[2] << 8 : 0;
  const size_t skip = kind == 2 ? 3 : 1;
  const auto path = fuzz::scratch_dir() / names[kind];
  fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data + skip), size - skip));
  auto tok = load_tokenizer(path, n_vocab);
  std::filesystem::remove(path);
  if (!tok) return 0;
  const auto ids = (*tok)->encode("Hello, world! <|im_start|> caf\xc3\xa9 12345", true);
  (void)(*tok)->decode(ids);
  for (int32_t id = -1; id <= (*tok)->n_vocab() && id < 64; ++id) (void)(*tok)->decode_bytes(id);
  return 0;
}
