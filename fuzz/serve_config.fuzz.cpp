// `troupe serve`'s YAML config (runtime/config/serve_config.cpp) from arbitrary text.
#include "fuzz/fuzz_support.hpp"
#include "runtime/config/serve_config.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)parse_serve_config(text, "fuzz.yaml", fuzz::scratch_dir());
  return 0;
}
