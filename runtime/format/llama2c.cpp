#include "runtime/format/llama2c.hpp"

#include <algorithm>
#include <cstring>

#include "runtime/core/mapped_file.hpp"

namespace troupe::format {

namespace {

constexpr size_t header_bytes = 7 * sizeof(int32_t);
// llama2.c's export.py writes versioned files starting with this magic ("ak42").
constexpr int32_t versioned_magic = 0x616b3432;
// Bounds that keep every size product below 2^63 while allowing any real model.
constexpr int64_t max_width = int64_t{1} << 20;
constexpr int64_t max_layers = 1024;

}  // namespace

const llama2c_array* llama2c_checkpoint::array(std::string_view name) const {
  for (const auto& a : arrays_)
    if (a.name == name) return &a;
  return nullptr;
}

expected<std::shared_ptr<const llama2c_checkpoint>> llama2c_checkpoint::open(const std::filesystem::path& path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return unexpected{mapped.error()};
  const auto& m = *mapped;
  return parse(m, m->data(), m->size(), path);
}

expected<std::shared_ptr<const llama2c_checkpoint>> llama2c_checkpoint::parse(std::shared_ptr<const void> owner,
                                                                              const uint8_t* data, size_t size,
                                                                              const std::filesystem::path& path) {
  const std::string where = "'" + path.string() + "'";
  if (size < header_bytes)
    return make_error(errc::truncated, where + " is truncated: " + std::to_string(size) +
                                           " bytes, shorter than the 28-byte llama2.c header");
  int32_t h[7];
  std::memcpy(h, data, header_bytes);
  if (h[0] == versioned_magic)
    return make_error(errc::unsupported_type, where + " is a versioned llama2.c export; only the legacy "
                                                      "(version 0) float32 checkpoint is supported");
  llama2c_config c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = h[5] < 0 ? -static_cast<int64_t>(h[5]) : h[5];
  c.seq_len = h[6];
  auto in = [](int64_t v, int64_t hi) { return v > 0 && v <= hi; };
  if (!in(c.dim, max_width) || !in(c.hidden_dim, max_width * 4) || !in(c.n_layers, max_layers) ||
      !in(c.n_heads, c.dim) || !in(c.n_kv_heads, c.n_heads) || !in(c.vocab_size, max_width * 4) ||
      !in(c.seq_len, max_width * 16))
    return make_error(errc::bad_format,
                      where + " does not start with a plausible llama2.c header (dim " + std::to_string(h[0]) +
                          ", hidden_dim " + std::to_string(h[1]) + ", n_layers " + std::to_string(h[2]) +
                          ", n_heads " + std::to_string(h[3]) + ", n_kv_heads " + std::to_string(h[4]) +
                          ", vocab_size " + std::to_string(h[5]) + ", seq_len " + std::to_string(h[6]) + ")");
  if (c.dim % c.n_heads != 0 || (c.dim / c.n_heads) % 2 != 0 || c.n_heads % c.n_kv_heads != 0)
    return make_error(errc::bad_format, where + ": dim " + std::to_string(c.dim) + " must split into " +
                                            std::to_string(c.n_heads) + " heads of even size, and the heads into " +
                                            std::to_string(c.n_kv_heads) + " kv heads");
  const int64_t head_size = c.dim / c.n_heads;
  const int64_t kv_dim = head_size * c.n_kv_heads;
  const int64_t L = c.n_layers, D = c.dim, H = c.hidden_dim, V = c.vocab_size;

  std::shared_ptr<llama2c_checkpoint> ck(new llama2c_checkpoint());
  ck->config_ = c;
  ck->path_ = path;
  ck->mapping_ = std::move(owner);
  // The layout, in file order; the RoPE tables are skipped (troupe computes its own).
  struct part {
    const char* name;
    std::vector<int64_t> shape;
    bool keep;
  };
  std::vector<part> parts = {
      {"token_embedding_table", {V, D}, true},
      {"rms_att_weight", {L, D}, true},
      {"wq", {L, D, D}, true},
      {"wk", {L, kv_dim, D}, true},
      {"wv", {L, kv_dim, D}, true},
      {"wo", {L, D, D}, true},
      {"rms_ffn_weight", {L, D}, true},
      {"w1", {L, H, D}, true},
      {"w2", {L, D, H}, true},
      {"w3", {L, H, D}, true},
      {"rms_final_weight", {D}, true},
      {"freq_cis_real", {c.seq_len, head_size / 2}, false},
      {"freq_cis_imag", {c.seq_len, head_size / 2}, false},
  };
  if (!c.shared_classifier) parts.push_back({"wcls", {V, D}, true});
  uint64_t offset = header_bytes;
  for (const auto& p : parts) {
    uint64_t n = 1;
    for (int64_t d : p.shape) n *= static_cast<uint64_t>(d);
    const uint64_t nbytes = n * sizeof(float);
    if (offset + nbytes > size)
      return make_error(errc::truncated, where + " is truncated: its header implies " + p.name + " at bytes [" +
                                             std::to_string(offset) + ", " + std::to_string(offset + nbytes) +
                                             ") but the file has " + std::to_string(size));
    if (p.keep)
      ck->arrays_.push_back({p.name, p.shape, reinterpret_cast<const float*>(data + offset),
                             static_cast<size_t>(nbytes)});
    offset += nbytes;
  }
  if (offset != size)
    return make_error(errc::bad_format, where + " has " + std::to_string(size - offset) +
                                            " bytes past what its llama2.c header describes (" +
                                            std::to_string(offset) + " bytes)");
  return std::shared_ptr<const llama2c_checkpoint>(std::move(ck));
}

std::filesystem::path find_llama2c_tokenizer(const std::filesystem::path& checkpoint) {
  namespace fs = std::filesystem;
  const fs::path dir = checkpoint.has_parent_path() ? checkpoint.parent_path() : fs::path(".");
  std::error_code ec;
  if (fs::is_regular_file(dir / "tokenizer.bin", ec)) return dir / "tokenizer.bin";
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= 7 && name.rfind("tok", 0) == 0 && entry.path().extension() == ".bin" &&
        entry.path() != checkpoint && entry.is_regular_file(ec))
      found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found.empty() ? fs::path() : found.front();
}

}  // namespace troupe::format
