#include "runtime/format/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/core/mapped_file.hpp"

namespace troupe::format {

namespace {

using json = nlohmann::json;

// Far above any real header (a 1000-shard model's is a few hundred KiB) and a guard against a
// garbage length making the JSON parser chew on tensor bytes.
constexpr uint64_t max_header_bytes = uint64_t{100} << 20;

unexpected bad(const std::filesystem::path& path, const std::string& what) {
  return make_error(errc::bad_format, "'" + path.string() + "': " + what);
}

std::optional<dtype> parse_safetensors_dtype(const std::string& s) {
  if (s == "F32") return dtype::f32;
  if (s == "F16") return dtype::f16;
  if (s == "BF16") return dtype::bf16;
  return std::nullopt;
}

const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    default: return "?";
  }
}

// "'x' (F32 [3, 4], data_offsets [0, 48])"
std::string describe(const safetensors_tensor& t) {
  std::string shape = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  return "'" + t.name + "' (" + dtype_name(t.type) + " " + shape + "], data_offsets [" + std::to_string(t.offset) +
         ", " + std::to_string(t.offset + t.nbytes) + "])";
}

// The format requires the byte buffer "entirely indexed" without holes (as the reference
// implementation checks): the regions, sorted by offset, must follow each other exactly and end at
// the end of the file. A hole is a region too small for its bytes, or bytes smuggled past the parser.
status check_coverage(const std::vector<safetensors_tensor>& sorted, uint64_t data_size,
                      const std::filesystem::path& path) {
  uint64_t covered = 0;
  const safetensors_tensor* prev = nullptr;
  for (const auto& t : sorted) {
    if (t.offset < covered)
      return bad(path, "tensor " + describe(t) + " overlaps tensor " + describe(*prev));
    if (t.offset > covered)
      return bad(path, "bytes [" + std::to_string(covered) + ", " + std::to_string(t.offset) +
                           ") of the data section belong to no tensor (" +
                           (prev ? "after tensor " + describe(*prev) + ", " : std::string()) + "before tensor " +
                           describe(t) + "); the format allows no holes");
    covered = t.offset + t.nbytes;
    prev = &t;
  }
  if (covered != data_size)
    return bad(path, "bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
                         ") of the data section belong to no tensor" +
                         (prev ? " (after tensor " + describe(*prev) + ")" : std::string()) +
                         "; the format allows no holes");
  return {};
}

}  // namespace

const safetensors_tensor* safetensors_file::tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

expected<std::shared_ptr<const safetensors_file>> safetensors_file::open(const std::filesystem::path& path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return unexpected{mapped.error()};
  const auto& m = *mapped;
  return parse(m, m->data(), m->size(), path);
}

expected<std::shared_ptr<const safetensors_file>> safetensors_file::parse(std::shared_ptr<const void> owner,
                                                                          const uint8_t* bytes, size_t size,
                                                                          const std::filesystem::path& path) {
  auto truncated = [&](const std::string& what) {
    return make_error(errc::truncated, "'" + path.string() + "' is truncated: it ends (" +
                                           std::to_string(size) + " bytes) inside " + what);
  };
  if (size < 8) return truncated("the header length");
  uint64_t header_len;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > max_header_bytes)
    return bad(path, "header length " + std::to_string(header_len) + " is not plausible");
  if (header_len > size - 8) return truncated("the JSON header (" + std::to_string(header_len) + " bytes)");

  const char* begin = reinterpret_cast<const char*>(bytes + 8);
  json header = json::parse(begin, begin + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad(path, "the header is not a JSON object");

  std::shared_ptr<safetensors_file> f(new safetensors_file());
  f->path_ = path;
  f->mapping_ = std::move(owner);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) return bad(path, "__metadata__ is not an object");
      for (auto m_it = info.begin(); m_it != info.end(); ++m_it)
        if (m_it.value().is_string()) f->metadata_[m_it.key()] = m_it.value().get<std::string>();
      continue;
    }
    if (!info.is_object()) return bad(path, "tensor '" + name + "' is not described by an object");
    auto dt = info.find("dtype");
    auto shape = info.find("shape");
    auto offsets = info.find("data_offsets");
    if (dt == info.end() || !dt->is_string() || shape == info.end() || !shape->is_array() ||
        offsets == info.end() || !offsets->is_array() || offsets->size() != 2)
      return bad(path, "tensor '" + name + "' lacks dtype, shape or data_offsets");
    const std::string dtype_name = dt->get<std::string>();
    auto type = parse_safetensors_dtype(dtype_name);
    if (!type)
      return make_error(errc::unsupported_type, "'" + path.string() + "': tensor '" + name + "' has dtype " +
                                                    dtype_name + ", supported: F32, F16, BF16");
    safetensors_tensor t;
    t.name = name;
    t.type = *type;
    if (shape->size() > 8) return bad(path, "tensor '" + name + "' has too many dimensions");
    uint64_t elems = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40))
        return bad(path, "tensor '" + name + "' has a bad dimension " + d.dump());
      const uint64_t n = d.get<uint64_t>();
      if (n != 0 && elems > (uint64_t{1} << 48) / n)
        return bad(path, "tensor '" + name + "' has too many elements");
      elems *= n;
      t.shape.push_back(static_cast<int64_t>(n));
    }
    const json& b = (*offsets)[0];
    const json& e = (*offsets)[1];
    if (!b.is_number_unsigned() || !e.is_number_unsigned() || b.get<uint64_t>() > e.get<uint64_t>())
      return bad(path, "tensor '" + name + "' has bad data_offsets " + offsets->dump());
    const uint64_t off_begin = b.get<uint64_t>(), off_end = e.get<uint64_t>();
    t.nbytes = static_cast<size_t>(elems * block_bytes(t.type));
    if (off_end - off_begin != t.nbytes)
      return bad(path, "tensor '" + name + "' spans " + std::to_string(off_end - off_begin) +
                           " bytes but its shape needs " + std::to_string(t.nbytes));
    if (off_end > data_size)
      return truncated("tensor '" + name + "' (needs data bytes up to " + std::to_string(off_end) +
                       ", the file has " + std::to_string(data_size) + ")");
    t.data = bytes + data_start + off_begin;
    t.offset = off_begin;
    f->tensors_.push_back(std::move(t));
  }
  // By offset, and an empty tensor before a non-empty one at the same offset.
  std::sort(f->tensors_.begin(), f->tensors_.end(), [](const auto& a, const auto& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  TROUPE_TRY(check_coverage(f->tensors_, data_size, path));
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return std::shared_ptr<const safetensors_file>(std::move(f));
}

const safetensors_tensor* safetensors_checkpoint::tensor(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

std::vector<std::string> safetensors_checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

expected<safetensors_checkpoint> safetensors_checkpoint::open(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path target = path;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "model.safetensors.index.json", ec)) {
      target = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors", ec)) {
      target = path / "model.safetensors";
    } else {
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(path, ec))
        if (entry.path().extension() == ".safetensors") found.push_back(entry.path());
      if (found.size() != 1)
        return make_error(errc::not_found, "'" + path.string() + "' has " + std::to_string(found.size()) +
                                               " .safetensors files and no model.safetensors.index.json");
      target = found[0];
    }
  }

  safetensors_checkpoint ck;
  auto add_file = [&](const fs::path& file) -> expected<const safetensors_file*> {
    auto f = safetensors_file::open(file);
    if (!f) return unexpected{f.error()};
    ck.files_.push_back(*f);
    return f->get();
  };

  if (target.extension() != ".json") {
    auto f = add_file(target);
    if (!f) return unexpected{f.error()};
    for (const auto& t : (*f)->tensors()) ck.tensors_.emplace(t.name, &t);
    return ck;
  }

  auto mapped = mapped_file::open(target);
  if (!mapped) return unexpected{mapped.error()};
  const char* begin = reinterpret_cast<const char*>((*mapped)->data());
  json index = json::parse(begin, begin + (*mapped)->size(), nullptr, false);
  if (index.is_discarded() || !index.is_object()) return bad(target, "not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) return bad(target, "no weight_map object");

  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) return bad(target, "weight_map['" + it.key() + "'] is not a string");
    const std::string shard = it.value().get<std::string>();
    // Shards are plain file names beside the index; anything else could reach outside the model.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      return bad(target, "weight_map['" + it.key() + "'] names '" + shard + "', not a file beside the index");
    by_shard[shard].push_back(it.key());
  }
  for (const auto& [shard, names] : by_shard) {
    auto f = add_file(target.parent_path() / shard);
    if (!f) return unexpected{f.error()};
    for (const auto& name : names) {
      const auto* t = (*f)->tensor(name);
      if (!t)
        return make_error(errc::not_found, "'" + target.string() + "' puts tensor '" + name + "' in '" + shard +
                                               "', which does not hold it");
      ck.tensors_.emplace(name, t);
    }
  }
  return ck;
}

}  // namespace troupe::format
