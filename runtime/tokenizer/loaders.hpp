#pragma once
// Per-format tokenizer loaders behind load_tokenizer(path). Internal to runtime/tokenizer.

#include <cstdint>
#include <filesystem>
#include <memory>

#include "runtime/core/error.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// A SentencePiece ModelProto (tokenizer.model); BPE models only.
expected<std::unique_ptr<tokenizer>> load_sentencepiece_model(const std::filesystem::path& path);
/// A llama2.c tokenizer.bin; n_vocab tokens (0: as many as the file holds).
expected<std::unique_ptr<tokenizer>> load_llama2c_tokenizer(const std::filesystem::path& path, int32_t n_vocab);
/// A Hugging Face tokenizer.json (byte-level BPE), with tokenizer_config.json / config.json beside it
/// for BOS/EOS and the chat template.
expected<std::unique_ptr<tokenizer>> load_tokenizer_json(const std::filesystem::path& path);

}  // namespace troupe
