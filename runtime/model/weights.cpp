#include "runtime/model/weights.hpp"

#include <cstring>
#include <fstream>

#include "runtime/model/load_common.hpp"

namespace troupe {

namespace {

int64_t element_count(const tensor_ref& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

}  // namespace

const tensor_ref* model_weights::find(std::string_view name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

size_t model_weights::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : tensors) n += t.nbytes;
  return n;
}

int64_t model_weights::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += element_count(t);
  return n;
}

expected<model_weights> load_model_weights(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    return make_error(errc::not_found, "model '" + path.string() + "' does not exist");
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "config.json", ec)) return detail::load_hf_weights(path);
    return make_error(errc::not_found, "model directory '" + path.string() +
                                           "' has no config.json (expected a Hugging Face model directory)");
  }
  // A file given from inside a Hugging Face directory means the directory.
  const auto ext = path.extension().string();
  if (ext == ".safetensors" || path.filename() == "config.json" ||
      path.filename() == "model.safetensors.index.json")
    return detail::load_hf_weights(path.parent_path().empty() ? fs::path(".") : path.parent_path());

  if (ext == ".gguf") return detail::load_gguf_weights(path);
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(errc::io_error, "cannot open '" + path.string() + "'");
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return detail::load_gguf_weights(path);
  if (ext == ".bin") return detail::load_llama2c_weights(path);
  return make_error(errc::bad_format, "'" + path.string() +
                                          "' is not a model troupe recognises (a .gguf file, a llama2.c .bin "
                                          "checkpoint or a Hugging Face directory)");
}

}  // namespace troupe
