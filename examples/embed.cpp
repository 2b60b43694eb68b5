// Embedding troupe in a C++ program: start the runtime in-process, generate with a token callback,
// then pull a second generation from a stream object. No HTTP involved.
//
//   build/bin/embed_example [MODEL_PATH]      (default: $TROUPE_MODEL, else ../shared's stories260K)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "actors/embedded.hpp"
#include "runtime/core/log.hpp"

int main(int argc, char** argv) {
  troupe::init_logging();  // stderr, level from $TROUPE_LOG_LEVEL (default warn)
  std::string path = argc > 1 ? argv[1] : "";
  if (path.empty()) path = std::getenv("TROUPE_MODEL") ? std::getenv("TROUPE_MODEL") : "../shared/models/stories260K/stories260K.gguf";

  troupe::serve_config cfg;
  troupe::model_config model;
  model.name = "stories";
  model.path = path;
  model.threads = 2;
  cfg.models.push_back(model);
  auto rt = troupe::embedded_runtime::start(cfg);
  if (!rt) {
    std::fprintf(stderr, "embed_example: %s\n", rt.error().what().c_str());
    return 1;
  }

  troupe::generate_options greedy;
  greedy.max_tokens = 64;
  greedy.sampling.temperature = 0.0f;

  // 1. A token callback: print each piece of text as soon as it is sampled.
  std::printf("callback: Once upon a time");
  auto out = (*rt)->generate("stories", "Once upon a time", greedy, [](std::string_view text, int32_t) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  if (!out) {
    std::fprintf(stderr, "\nembed_example: %s\n", out.error().what().c_str());
    return 1;
  }
  std::printf("\n[%s, %lld prompt + %lld generated tokens]\n", out->finish_reason.c_str(),
              static_cast<long long>(out->usage.prompt_tokens), static_cast<long long>(out->usage.completion_tokens));

  // 2. A stream object: pull the events of a second generation one by one.
  auto stream = (*rt)->open_stream("stories", "Tom and his dog went to the", greedy);
  if (!stream) {
    std::fprintf(stderr, "embed_example: %s\n", stream.error().what().c_str());
    return 1;
  }
  std::printf("stream: Tom and his dog went to the");
  while (auto ev = (*stream)->next()) std::printf("%s", ev->text.c_str());
  std::printf("\n");
  return 0;
}
