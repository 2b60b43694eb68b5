// llama2.c checkpoints: the 7-int header and the arrays it implies (runtime/format/llama2c.cpp).
#include "fuzz/fuzz_support.hpp"
#include "runtime/format/llama2c.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  auto ckpt = format::llama2c_checkpoint::open(fuzz::as_file(data, size));
  if (!ckpt) return 0;
  for (const auto& a : (*ckpt)->arrays()) fuzz::touch(a.data, a.nbytes);
  return 0;
}
