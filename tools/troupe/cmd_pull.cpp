// troupe pull: download a model from the Hugging Face hub (or a mirror in its URL layout) into the
// local model cache, resuming an interrupted download. Prints the local path.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "runtime/hub/pull.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

void add_pull(CLI::App& app) {
  auto spec = std::make_shared<std::string>();
  auto opts = std::make_shared<pull_options>();
  CLI::App* cmd = app.add_subcommand("pull", "download a model (REPO or REPO/FILE) from the Hugging Face hub into the model cache");
  cmd->add_option("model", *spec, "owner/name (a whole Hugging Face model directory) or owner/name/FILE (e.g. a .gguf)")->required();
  cmd->add_option("--base-url", opts->base_url, "hub base URL (default: $TROUPE_HUB_URL or https://huggingface.co)");
  auto cache = std::make_shared<std::string>();
  cmd->add_option("--cache", *cache, "model cache directory (default: $TROUPE_CACHE or ~/.cache/troupe/models)");
  cmd->callback([spec, opts, cache] {
    opts->cache_dir = *cache;
    opts->progress = isatty(STDERR_FILENO);
    auto path = pull_model(*spec, *opts);
    if (!path) {
      std::fprintf(stderr, "troupe pull: %s\n", path.error().what().c_str());
      exit_code() = 1;
      return;
    }
    std::printf("%s\n", path->c_str());
  });
}

}  // namespace troupe::cli
