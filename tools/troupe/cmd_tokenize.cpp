// troupe tokenize: text -> token ids as a JSON array (no BOS/EOS added); --decode: ids -> text.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include "runtime/model/weights.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

/// The tokenizer of PATH without loading weights where the format allows: a .gguf file, a
/// directory or file holding only a tokenizer, or (llama2.c) the checkpoint plus its tokenizer.bin,
/// whose vocabulary size only the checkpoint knows.
expected<std::unique_ptr<tokenizer>> tokenizer_for(const std::filesystem::path& path, const std::string& override_path) {
  namespace fs = std::filesystem;
  if (!override_path.empty()) {
    int32_t n_vocab = 0;
    if (fs::is_regular_file(path) && path.extension() == ".bin") {
      auto w = load_model_weights(path);
      if (w) n_vocab = static_cast<int32_t>(w->hp.n_vocab);
    }
    return load_tokenizer(override_path, n_vocab);
  }
  if (!fs::exists(path)) return make_error(errc::not_found, "no such file or directory: '" + path.string() + "'");
  // GGUF files, tokenizer files and directories need no weights: load_tokenizer reads them directly.
  if (fs::is_directory(path) || path.extension() == ".gguf" || path.extension() == ".json" || path.extension() == ".model")
    return load_tokenizer(path);
  auto w = load_model_weights(path);
  TROUPE_TRY(w);
  return load_tokenizer(*w);
}

/// Ids from "[1, 2, 3]", "1,2,3" or "1 2 3".
expected<std::vector<int32_t>> parse_ids(const std::vector<std::string>& parts) {
  std::string all;
  for (const auto& p : parts) all += p + " ";
  for (char& c : all)
    if (c == '[' || c == ']' || c == ',') c = ' ';
  std::istringstream in(all);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    try {
      size_t used = 0;
      const long v = std::stol(word, &used);
      if (used != word.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(word);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      return make_error(errc::invalid_argument, "--decode: '" + word + "' is not a token id");
    }
  }
  return ids;
}

struct tokenize_args {
  std::string model, tokenizer, text;
  std::vector<std::string> decode;
  bool special = false;
};

int run_tokenize(const tokenize_args& a) {
  auto tok = tokenizer_for(a.model, a.tokenizer);
  if (!tok) {
    std::fprintf(stderr, "troupe tokenize: %s\n", tok.error().what().c_str());
    return 1;
  }
  if (!a.decode.empty()) {
    auto ids = parse_ids(a.decode);
    if (!ids) {
      std::fprintf(stderr, "troupe tokenize: %s\n", ids.error().what().c_str());
      return 1;
    }
    for (int32_t id : *ids)
      if (id >= (*tok)->n_vocab()) {
        std::fprintf(stderr, "troupe tokenize: token id %d is outside the vocabulary (%d tokens)\n", id, (*tok)->n_vocab());
        return 1;
      }
    const std::string text = (*tok)->decode(*ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  const auto ids = (*tok)->encode(a.text, a.special);
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  return 0;
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto args = std::make_shared<tokenize_args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of a text as a JSON array (no BOS/EOS), or decode ids");
  cmd->add_option("--model,-m", args->model, "model file, or a directory/file holding only a tokenizer")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer file to use instead of the model's");
  auto* text = cmd->add_option("--text", args->text, "text to encode");
  auto* dec = cmd->add_option("--decode", args->decode, "token ids to decode: a JSON array or numbers separated by commas/spaces");
  text->excludes(dec);
  cmd->add_flag("--special", args->special, "recognise special-token text such as <|im_start|> (tokenizer.json always does)");
  cmd->callback([args] { exit_code() = run_tokenize(*args); });
}

}  // namespace troupe::cli
