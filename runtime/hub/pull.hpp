#pragma once
// Downloads models from a Hugging Face hub (or a mirror in its URL layout:
// BASE/REPO/resolve/main/FILE) into the local model cache, resuming interrupted downloads.

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe {

/// Settings of a download.
struct pull_options {
  std::string base_url;              ///< "" : $TROUPE_HUB_URL, else https://huggingface.co
  std::filesystem::path cache_dir;   ///< "" : $TROUPE_CACHE, else ~/.cache/troupe/models
  bool progress = false;             ///< draw a progress bar on stderr
};

/// The cache directory pull_options resolves to.
std::filesystem::path model_cache_dir(const pull_options& opts);

/// Downloads REPO/FILE (e.g. "owner/name/model.gguf"), or, for a bare REPO ("owner/name"), the files
/// of a Hugging Face model directory (config.json, the safetensors weights, tokenizer files).
/// Returns the local path of the file or directory. Files already complete are not fetched again; a
/// `.partial` file left by an interrupted download is resumed with an HTTP Range request. The size
/// received must equal the size the server announced.
expected<std::filesystem::path> pull_model(const std::string& spec, const pull_options& opts = {});

/// "hf:REPO/FILE" -> the cached file (pulled first if missing); any other path unchanged.
expected<std::string> resolve_model_path(const std::string& spec, const pull_options& opts = {});

}  // namespace troupe
