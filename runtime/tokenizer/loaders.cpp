// load_tokenizer(path) and load_tokenizer(model): pick the format from the file name or the files
// a directory holds.

#include "runtime/tokenizer/loaders.hpp"

#include <algorithm>

#include "runtime/format/gguf.hpp"
#include "runtime/model/weights.hpp"

namespace troupe {

namespace {

namespace fs = std::filesystem;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// llama2.c names its tokenizers tokenizer.bin or tok<N>.bin.
bool is_llama2c_tokenizer_name(const std::string& name) {
  return name == "tokenizer.bin" || (name.starts_with("tok") && name.ends_with(".bin"));
}

expected<std::unique_ptr<tokenizer>> load_directory(const fs::path& dir, int32_t n_vocab_hint) {
  const fs::path json = dir / "tokenizer.json";
  const fs::path model = dir / "tokenizer.model";
  if (is_file(json)) {
    auto t = load_tokenizer_json(json);
    // A SentencePiece model's tokenizer.json (Metaspace, not byte-level) is not implemented:
    // its tokenizer.model holds the same vocabulary.
    if (t || !is_file(model)) return t;
  }
  if (is_file(model)) return load_sentencepiece_model(model);
  if (is_file(dir / "tokenizer.bin")) return load_llama2c_tokenizer(dir / "tokenizer.bin", n_vocab_hint);
  std::vector<fs::path> bins;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec) && is_llama2c_tokenizer_name(e.path().filename().string())) bins.push_back(e.path());
  }
  if (!bins.empty()) {
    std::sort(bins.begin(), bins.end());
    return load_llama2c_tokenizer(bins.front(), n_vocab_hint);
  }
  return make_error(errc::not_found, dir.string() + ": no tokenizer.json, tokenizer.model, tokenizer.bin or tok*.bin");
}

}  // namespace

expected<std::unique_ptr<tokenizer>> load_tokenizer(const fs::path& path, int32_t n_vocab_hint) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_directory(path, n_vocab_hint);
  if (!fs::exists(path, ec)) return make_error(errc::not_found, "tokenizer file '" + path.string() + "' does not exist");
  const std::string ext = path.extension().string();
  if (ext == ".json") return load_tokenizer_json(path);
  if (ext == ".model") return load_sentencepiece_model(path);
  if (ext == ".bin") return load_llama2c_tokenizer(path, n_vocab_hint);
  if (ext == ".gguf") {
    auto g = format::gguf_file::open(path);
    if (!g) return unexpected{g.error()};
    return load_tokenizer(**g);
  }
  return make_error(errc::bad_format, path.string() + ": unknown tokenizer file type (expected tokenizer.json, "
                                      "tokenizer.model, a llama2.c tokenizer.bin or a .gguf)");
}

expected<std::unique_ptr<tokenizer>> load_tokenizer(const model_weights& model) {
  if (model.gguf) return load_tokenizer(*model.gguf);
  if (!model.tokenizer_path.empty()) {
    const int64_t n = model.hp.n_vocab;
    return load_tokenizer(model.tokenizer_path, n > 0 && n <= INT32_MAX ? static_cast<int32_t>(n) : 0);
  }
  return make_error(errc::not_found, model.path.string() + ": the model has no tokenizer (no GGUF metadata and no "
                                     "tokenizer file beside it)");
}

}  // namespace troupe
