// GGUF: header, metadata, tensor table and tensor offsets (runtime/format/gguf.cpp), then the
// tokenizer a GGUF file carries in its metadata (runtime/tokenizer/load_gguf.cpp).
#include "fuzz/fuzz_support.hpp"
#include "runtime/format/gguf.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  auto file = format::gguf_file::open(fuzz::as_file(data, size));
  if (!file) return 0;
  for (const auto& t : (*file)->tensors()) fuzz::touch(t.data, t.nbytes);
  auto tok = load_tokenizer(**file);
  if (!tok) return 0;
  const auto ids = (*tok)->encode("Hello, world! <s> 1234 \xe2\x96\x81x", true);
  (void)(*tok)->decode(ids);
  return 0;
}
