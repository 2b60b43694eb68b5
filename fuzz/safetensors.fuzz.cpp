// Safetensors: the header length, the JSON header and every tensor's dtype, shape and data offsets
// (runtime/format/safetensors.cpp).
#include "fuzz/fuzz_support.hpp"
#include "runtime/format/safetensors.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  auto file = format::safetensors_file::open(fuzz::as_file(data, size));
  if (!file) return 0;
  for (const auto& t : (*file)->tensors()) fuzz::touch(t.data, t.nbytes);
  return 0;
}
