#include "runtime/format/gguf.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "runtime/core/mapped_file.hpp"

namespace troupe::format {

namespace {

// GGUF metadata value types.
enum gguf_kind : uint32_t {
  k_u8 = 0, k_i8 = 1, k_u16 = 2, k_i16 = 3, k_u32 = 4, k_i32 = 5, k_f32 = 6, k_bool = 7,
  k_string = 8, k_array = 9, k_u64 = 10, k_i64 = 11, k_f64 = 12,
};

constexpr uint32_t gguf_magic = 0x46554747;  // "GGUF" little-endian
// Arrays of arrays are legal but nothing real nests deeply; the limit keeps a hostile file from
// exhausting the stack.
constexpr int max_array_depth = 8;
constexpr uint32_t max_dims = 4;

// Smallest encoded size of one value of a kind, so a count can be checked against the bytes left
// before anything is allocated for it.
size_t min_encoded_size(uint32_t kind) {
  switch (kind) {
    case k_u8: case k_i8: case k_bool: return 1;
    case k_u16: case k_i16: return 2;
    case k_u32: case k_i32: case k_f32: return 4;
    case k_u64: case k_i64: case k_f64: case k_string: return 8;
    case k_array: return 12;
    default: return 0;
  }
}

// A cursor over the mapped bytes; every read checks the bytes left and fails with `truncated`.
class reader {
 public:
  reader(const uint8_t* data, size_t size, const std::filesystem::path& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  unexpected truncated(const std::string& what) const {
    return make_error(errc::truncated, "'" + path_.string() + "' is truncated: it ends (" +
                                           std::to_string(size_) + " bytes) inside " + what);
  }
  unexpected bad(const std::string& what) const {
    return make_error(errc::bad_format, "'" + path_.string() + "': " + what);
  }

  template <class T>
  expected<T> read(const char* what) {
    if (left() < sizeof(T)) return truncated(what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  expected<std::string> read_string(const std::string& what) {
    auto n = read<uint64_t>(what.c_str());
    if (!n) return unexpected{n.error()};
    if (*n > left()) return truncated(what + " (a string of " + std::to_string(*n) + " bytes)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(*n));
    pos_ += static_cast<size_t>(*n);
    return s;
  }

  // Reads v if enough bytes are left (no message built on the hot path).
  template <class T>
  bool take(T& v) {
    if (left() < sizeof(T)) return false;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <class T, class Out>
  bool take_as(gguf_value& out) {
    T v;
    if (!take(v)) return false;
    out.v = static_cast<Out>(v);
    return true;
  }

  expected<gguf_value> read_value(uint32_t kind, const std::string& key, int depth) {
    auto value_truncated = [&] { return truncated("the value of '" + key + "'"); };
    gguf_value out;
    bool ok = true;
    switch (kind) {
      case k_u8: ok = take_as<uint8_t, uint64_t>(out); break;
      case k_i8: ok = take_as<int8_t, int64_t>(out); break;
      case k_u16: ok = take_as<uint16_t, uint64_t>(out); break;
      case k_i16: ok = take_as<int16_t, int64_t>(out); break;
      case k_u32: ok = take_as<uint32_t, uint64_t>(out); break;
      case k_i32: ok = take_as<int32_t, int64_t>(out); break;
      case k_u64: ok = take_as<uint64_t, uint64_t>(out); break;
      case k_i64: ok = take_as<int64_t, int64_t>(out); break;
      case k_f32: ok = take_as<float, double>(out); break;
      case k_f64: ok = take_as<double, double>(out); break;
      case k_bool: {
        uint8_t v = 0;
        if (!take(v)) return value_truncated();
        if (v > 1) return bad("key '" + key + "' has a bool value of " + std::to_string(v));
        out.v = v != 0;
        break;
      }
      case k_string: {
        uint64_t n = 0;
        if (!take(n) || n > left()) return value_truncated();
        out.v = std::string(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        break;
      }
      case k_array: {
        if (depth >= max_array_depth) return bad("key '" + key + "' nests arrays too deeply");
        uint32_t elem = 0;
        uint64_t n = 0;
        if (!take(elem)) return value_truncated();
        const size_t min_size = min_encoded_size(elem);
        if (min_size == 0)
          return bad("key '" + key + "' is an array of unknown type " + std::to_string(elem));
        if (!take(n)) return value_truncated();
        // Each element takes at least min_size bytes: a count the rest of the file cannot hold
        // is a truncation (or garbage) and must not reach reserve().
        if (n > left() / min_size)
          return truncated("the value of '" + key + "' (an array of " + std::to_string(n) + " elements)");
        std::vector<gguf_value> items;
        items.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) {
          auto item = read_value(elem, key, depth + 1);
          if (!item) return unexpected{item.error()};
          items.push_back(std::move(*item));
        }
        out.v = std::move(items);
        break;
      }
      default:
        return bad("key '" + key + "' has unknown value type " + std::to_string(kind));
    }
    if (!ok) return value_truncated();
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::filesystem::path& path_;
};

std::string supported_type_list() { return "F32, F16, BF16, Q8_0, Q4_0"; }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "'blk.0.attn_q.weight' (F16 [64, 64], 8192 bytes at data offset 4096)"
std::string describe(const gguf_tensor& t) {
  return "'" + t.name + "' (" + ggml_type_name(static_cast<uint32_t>(t.type)) + " " + shape_text(t.shape) + ", " +
         std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) + ")";
}

// The data section must be the tensors back to back, each padded to the alignment, in any order:
// that is how llama.cpp and gguf-py write it (llama.cpp's reader even demands the order of the
// infos). Type and shape fix a tensor's size, so a region that runs into the next tensor, or is
// followed by an alignment or more of bytes that belong to no tensor (before the next tensor or the
// end of the file), has the wrong type, shape or offset: an F32 tensor relabelled F16 leaves half
// its bytes unclaimed. (A size error of less than one alignment unit cannot be seen this way; tensor
// sizes in real models are multiples of it.)
status check_layout(const std::vector<gguf_tensor>& tensors, uint64_t data_size, uint32_t alignment,
                    const std::filesystem::path& path) {
  std::vector<const gguf_tensor*> by_offset;
  by_offset.reserve(tensors.size());
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const gguf_tensor* a, const gguf_tensor* b) { return a->offset < b->offset; });
  const std::string where = "'" + path.string() + "': ";
  const std::string rule = " (tensors lie back to back, each padded to the alignment of " + std::to_string(alignment) +
                           " bytes, so a type or shape that does not match the data region shows up here)";
  auto padded_end = [&](const gguf_tensor* t) { return (t->offset + t->nbytes + alignment - 1) / alignment * alignment; };
  if (by_offset.front()->offset != 0)
    return make_error(errc::bad_format, where + "the data section starts with " + std::to_string(by_offset.front()->offset) +
                                            " bytes that belong to no tensor, before tensor " + describe(*by_offset.front()) + rule);
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const gguf_tensor* prev = by_offset[i - 1];
    const gguf_tensor* t = by_offset[i];
    if (t->offset < prev->offset + prev->nbytes)
      return make_error(errc::bad_format, where + "tensor " + describe(*t) + " overlaps tensor " + describe(*prev));
    if (t->offset != padded_end(prev))
      return make_error(errc::bad_format, where + "tensor " + describe(*prev) + " is followed by " +
                                              std::to_string(t->offset - prev->offset - prev->nbytes) +
                                              " bytes that belong to no tensor, before tensor " + describe(*t) + rule);
  }
  const gguf_tensor* last = by_offset.back();
  const uint64_t tail = data_size - last->offset - last->nbytes;  // the caller checked every region fits
  if (tail >= alignment)
    return make_error(errc::bad_format, where + "tensor " + describe(*last) + " is followed by " + std::to_string(tail) +
                                            " bytes that belong to no tensor, up to the end of the file" + rule);
  return {};
}

}  // namespace

const char* ggml_type_name(uint32_t id) noexcept {
  static constexpr const char* names[] = {
      "F32",     "F16",    "Q4_0",   "Q4_1",  "Q4_2",  "Q4_3",    "Q5_0",  "Q5_1",   "Q8_0",
      "Q8_1",    "Q2_K",   "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",    "Q8_K",  "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S",  "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",  "I8",    "I16",    "I32",
      "I64",     "F64",    "IQ1_M",  "BF16",  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
  };
  return id < std::size(names) ? names[id] : "unknown";
}

std::optional<int64_t> gguf_value::as_int() const {
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> gguf_value::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> gguf_value::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

const std::string* gguf_value::as_string() const { return std::get_if<std::string>(&v); }

const std::vector<gguf_value>* gguf_value::as_array() const {
  return std::get_if<std::vector<gguf_value>>(&v);
}

gguf_file::~gguf_file() = default;

const gguf_value* gguf_file::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const gguf_tensor* gguf_file::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

expected<std::shared_ptr<const gguf_file>> gguf_file::open(const std::filesystem::path& path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return unexpected{mapped.error()};
  const auto& m = *mapped;
  return parse(m, m->data(), m->size(), path);
}

expected<std::shared_ptr<const gguf_file>> gguf_file::parse(std::shared_ptr<const void> owner, const uint8_t* data,
                                                            size_t size, const std::filesystem::path& path) {
  reader r(data, size, path);

  std::shared_ptr<gguf_file> f(new gguf_file());
  f->path_ = path;
  f->mapping_ = std::move(owner);

  auto magic = r.read<uint32_t>("the magic number");
  if (!magic) return unexpected{magic.error()};
  if (*magic != gguf_magic) return r.bad("not a GGUF file (bad magic)");
  auto version = r.read<uint32_t>("the version");
  if (!version) return unexpected{version.error()};
  // v1 used 32-bit counts and lengths; nothing current writes it.
  if (*version != 2 && *version != 3)
    return make_error(errc::unsupported_type, "'" + path.string() + "': GGUF version " +
                                                  std::to_string(*version) + " (supported: 2, 3)");
  f->version_ = *version;
  auto n_tensors = r.read<uint64_t>("the tensor count");
  if (!n_tensors) return unexpected{n_tensors.error()};
  auto n_kv = r.read<uint64_t>("the metadata count");
  if (!n_kv) return unexpected{n_kv.error()};
  // A key takes >= 13 bytes (length, type, one byte of value) and a tensor info >= 24.
  if (*n_kv > r.left() / 13)
    return r.truncated("the metadata (" + std::to_string(*n_kv) + " keys announced)");
  if (*n_tensors > r.left() / 24)
    return r.truncated("the tensor infos (" + std::to_string(*n_tensors) + " tensors announced)");

  for (uint64_t i = 0; i < *n_kv; ++i) {
    auto key = r.read_string("metadata key #" + std::to_string(i));
    if (!key) return unexpected{key.error()};
    auto kind = r.read<uint32_t>(("the type of key '" + *key + "'").c_str());
    if (!kind) return unexpected{kind.error()};
    auto value = r.read_value(*kind, *key, 0);
    if (!value) return unexpected{value.error()};
    // llama.cpp refuses a repeated key too: which of two values is meant is anyone's guess.
    if (f->kv_.count(*key) != 0) return r.bad("metadata key '" + *key + "' appears twice");
    f->kv_.emplace(std::move(*key), std::move(*value));
  }

  if (auto* a = f->find("general.alignment")) {
    auto v = a->as_int();
    if (!v || *v <= 0 || *v > (1 << 20) || (*v & (*v - 1)) != 0)
      return r.bad("general.alignment must be a power of two up to 1 MiB");
    f->alignment_ = static_cast<uint32_t>(*v);
  }

  struct raw_info {
    uint32_t type;
    uint64_t offset;
  };
  std::vector<raw_info> raw;
  raw.reserve(static_cast<size_t>(*n_tensors));
  f->tensors_.reserve(static_cast<size_t>(*n_tensors));
  for (uint64_t i = 0; i < *n_tensors; ++i) {
    auto name = r.read_string("the name of tensor #" + std::to_string(i));
    if (!name) return unexpected{name.error()};
    const std::string what = "the info of tensor '" + *name + "'";
    auto n_dims = r.read<uint32_t>(what.c_str());
    if (!n_dims) return unexpected{n_dims.error()};
    if (*n_dims == 0 || *n_dims > max_dims)
      return r.bad("tensor '" + *name + "' has " + std::to_string(*n_dims) + " dimensions (1 to 4 allowed)");
    gguf_tensor t;
    t.name = std::move(*name);
    t.shape.resize(*n_dims);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < *n_dims; ++d) {
      auto ne = r.read<uint64_t>(what.c_str());
      if (!ne) return unexpected{ne.error()};
      // 2^40 elements per dimension is far past any real model and keeps the product checkable.
      if (*ne == 0 || *ne > (uint64_t{1} << 40) || elems > (uint64_t{1} << 48) / *ne)
        return r.bad("tensor '" + t.name + "' has an impossible dimension " + std::to_string(*ne));
      elems *= *ne;
      t.shape[*n_dims - 1 - d] = static_cast<int64_t>(*ne);  // GGUF stores ne innermost first
    }
    auto type = r.read<uint32_t>(what.c_str());
    if (!type) return unexpected{type.error()};
    auto offset = r.read<uint64_t>(what.c_str());
    if (!offset) return unexpected{offset.error()};
    raw.push_back({*type, *offset});
    f->tensors_.push_back(std::move(t));
  }

  // Types are checked after all infos parsed so a truncated header reports truncation first.
  for (size_t i = 0; i < raw.size(); ++i) {
    auto& t = f->tensors_[i];
    if (!is_supported_ggml_type(raw[i].type))
      return make_error(errc::unsupported_type,
                        "'" + path.string() + "': tensor '" + t.name + "' has type " +
                            ggml_type_name(raw[i].type) + " (" + std::to_string(raw[i].type) +
                            "), supported: " + supported_type_list());
    t.type = static_cast<dtype>(raw[i].type);
    const int64_t cols = t.shape.back();
    if (cols % block_elems(t.type) != 0)
      return r.bad("tensor '" + t.name + "' of type " + ggml_type_name(raw[i].type) + " has rows of " +
                   std::to_string(cols) + " elements, not a multiple of " +
                   std::to_string(block_elems(t.type)));
    size_t nbytes = row_bytes(t.type, cols);
    for (size_t d = 0; d + 1 < t.shape.size(); ++d) nbytes *= static_cast<size_t>(t.shape[d]);
    t.nbytes = nbytes;
    t.offset = raw[i].offset;
    if (t.offset % f->alignment_ != 0)
      return r.bad("tensor '" + t.name + "' has offset " + std::to_string(t.offset) +
                   ", not a multiple of the alignment " + std::to_string(f->alignment_));
    if (!f->tensor_index_.emplace(t.name, i).second)
      return r.bad("tensor '" + t.name + "' appears twice");
  }

  const uint64_t header_end = r.pos();
  f->data_offset_ = (header_end + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  const uint64_t file_size = size;
  for (auto& t : f->tensors_) {
    // offset <= 2^62 and nbytes < 2^52 or so: the sums cannot overflow.
    if (t.offset > (uint64_t{1} << 62))
      return r.bad("tensor '" + t.name + "' has an out-of-range offset " + std::to_string(t.offset));
    const uint64_t end = f->data_offset_ + t.offset + t.nbytes;
    if (end > file_size)
      return make_error(errc::truncated,
                        "'" + path.string() + "' is truncated: tensor '" + t.name + "' needs bytes [" +
                            std::to_string(f->data_offset_ + t.offset) + ", " + std::to_string(end) +
                            ") but the file has " + std::to_string(file_size) +
                            " (or its offset is out of range)");
    t.data = data + f->data_offset_ + t.offset;
  }
  // Every region lies inside the file now, so a layout error is a region of the wrong size.
  if (!f->tensors_.empty())
    TROUPE_TRY(check_layout(f->tensors_, file_size - f->data_offset_, f->alignment_, path));
  return std::shared_ptr<const gguf_file>(std::move(f));
}

// ---- writer ----

namespace {

constexpr uint32_t writer_alignment = 32;

// Picks the GGUF kind a value is written as (see gguf_writer::set).
expected<uint32_t> kind_of(const gguf_value& value) {
  struct visitor {
    expected<uint32_t> operator()(std::monostate) const {
      return make_error(errc::invalid_argument, "empty GGUF value");
    }
    expected<uint32_t> operator()(bool) const { return uint32_t{k_bool}; }
    expected<uint32_t> operator()(int64_t i) const {
      return uint32_t(i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max()
                          ? k_i32 : k_i64);
    }
    expected<uint32_t> operator()(uint64_t u) const {
      return uint32_t(u <= std::numeric_limits<uint32_t>::max() ? k_u32 : k_u64);
    }
    expected<uint32_t> operator()(double) const { return uint32_t{k_f32}; }
    expected<uint32_t> operator()(const std::string&) const { return uint32_t{k_string}; }
    expected<uint32_t> operator()(const std::vector<gguf_value>&) const { return uint32_t{k_array}; }
  };
  return std::visit(visitor{}, value.v);
}

// The element kind of an array: all elements must agree, widened to the widest integer needed.
expected<uint32_t> element_kind(const std::vector<gguf_value>& items) {
  if (items.empty()) return uint32_t{k_i32};
  auto first = kind_of(items[0]);
  if (!first) return first;
  uint32_t kind = *first;
  for (const auto& item : items) {
    auto k = kind_of(item);
    if (!k) return k;
    if (*k == kind) continue;
    if ((kind == k_i32 && *k == k_i64) || (kind == k_u32 && *k == k_u64)) kind = *k;
    else if ((kind == k_i64 && *k == k_i32) || (kind == k_u64 && *k == k_u32)) continue;
    else return make_error(errc::invalid_argument, "GGUF array mixes value types");
  }
  return kind;
}

class byte_sink {
 public:
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  template <class T>
  void pod(T v) { bytes(&v, sizeof(T)); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  std::vector<uint8_t>& buffer() { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

status encode_value(byte_sink& out, const gguf_value& value, uint32_t kind) {
  switch (kind) {
    case k_bool: out.pod<uint8_t>(*value.as_bool() ? 1 : 0); break;
    case k_i32: out.pod<int32_t>(static_cast<int32_t>(*value.as_int())); break;
    case k_i64: out.pod<int64_t>(*value.as_int()); break;
    case k_u32: out.pod<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(value.v))); break;
    case k_u64: out.pod<uint64_t>(std::get<uint64_t>(value.v)); break;
    case k_f32: out.pod<float>(static_cast<float>(*value.as_float())); break;
    case k_string: out.str(*value.as_string()); break;
    case k_array: {
      const auto& items = *value.as_array();
      auto elem = element_kind(items);
      if (!elem) return unexpected{elem.error()};
      out.pod<uint32_t>(*elem);
      out.pod<uint64_t>(items.size());
      for (const auto& item : items) TROUPE_TRY(encode_value(out, item, *elem));
      break;
    }
    default: return make_error(errc::internal, "GGUF kind " + std::to_string(kind));
  }
  return {};
}

struct file_closer {
  void operator()(std::FILE* f) const { if (f) std::fclose(f); }
};

}  // namespace

void gguf_writer::set(std::string key, gguf_value value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(std::move(key), std::move(value));
}

void gguf_writer::set_u32(std::string key, uint32_t v) { set(std::move(key), gguf_value{uint64_t{v}}); }
void gguf_writer::set_f32(std::string key, float v) { set(std::move(key), gguf_value{double{v}}); }
void gguf_writer::set_str(std::string key, std::string v) { set(std::move(key), gguf_value{std::move(v)}); }
void gguf_writer::set_bool(std::string key, bool v) { set(std::move(key), gguf_value{v}); }

void gguf_writer::add_tensor(std::string name, dtype type, std::vector<int64_t> shape,
                             std::vector<uint8_t> bytes) {
  tensors_.push_back({std::move(name), type, std::move(shape), std::move(bytes), nullptr});
}

void gguf_writer::add_tensor(std::string name, dtype type, std::vector<int64_t> shape,
                             row_source source) {
  tensors_.push_back({std::move(name), type, std::move(shape), {}, std::move(source)});
}

status gguf_writer::write(const std::filesystem::path& path) const {
  byte_sink head;
  head.pod<uint32_t>(gguf_magic);
  head.pod<uint32_t>(3);
  head.pod<uint64_t>(tensors_.size());
  head.pod<uint64_t>(kv_.size());
  for (const auto& [key, value] : kv_) {
    auto kind = kind_of(value);
    if (!kind) return make_error(errc::invalid_argument, "GGUF key '" + key + "': " + kind.error().message());
    head.str(key);
    head.pod<uint32_t>(*kind);
    if (auto st = encode_value(head, value, *kind); !st)
      return make_error(errc::invalid_argument, "GGUF key '" + key + "': " + st.error().message());
  }

  std::vector<size_t> sizes;
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    if (t.shape.empty() || t.shape.size() > max_dims)
      return make_error(errc::invalid_argument, "tensor '" + t.name + "' must have 1 to 4 dimensions");
    const int64_t cols = t.shape.back();
    if (cols <= 0 || cols % block_elems(t.type) != 0)
      return make_error(errc::invalid_argument, "tensor '" + t.name + "': row length " +
                                                    std::to_string(cols) + " is not a multiple of " +
                                                    std::to_string(block_elems(t.type)));
    size_t nbytes = row_bytes(t.type, cols);
    for (size_t d = 0; d + 1 < t.shape.size(); ++d) nbytes *= static_cast<size_t>(t.shape[d]);
    if (!t.source && t.bytes.size() != nbytes)
      return make_error(errc::invalid_argument, "tensor '" + t.name + "' has " +
                                                    std::to_string(t.bytes.size()) + " bytes, its shape needs " +
                                                    std::to_string(nbytes));
    head.str(t.name);
    head.pod<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) head.pod<uint64_t>(static_cast<uint64_t>(t.shape[d]));
    head.pod<uint32_t>(static_cast<uint32_t>(t.type));
    head.pod<uint64_t>(offset);
    sizes.push_back(nbytes);
    offset += (nbytes + writer_alignment - 1) / writer_alignment * writer_alignment;
  }
  auto& hb = head.buffer();
  hb.resize((hb.size() + writer_alignment - 1) / writer_alignment * writer_alignment, 0);

  // Written beside the target and renamed, so a failed write never leaves a half file under the name.
  std::filesystem::path tmp = path;
  tmp += ".partial";
  std::unique_ptr<std::FILE, file_closer> f(std::fopen(tmp.c_str(), "wb"));
  if (!f) return make_error(errc::io_error, "cannot create '" + tmp.string() + "': " + std::strerror(errno));
  auto fail = [&](const std::string& why) -> status {
    f.reset();
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return make_error(errc::io_error, "writing '" + path.string() + "': " + why);
  };
  auto put = [&](const void* p, size_t n) { return std::fwrite(p, 1, n, f.get()) == n; };
  if (!put(hb.data(), hb.size())) return fail(std::strerror(errno));

  static constexpr uint8_t zeros[writer_alignment] = {};
  std::vector<uint8_t> chunk;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    if (!t.source) {
      if (!put(t.bytes.data(), t.bytes.size())) return fail(std::strerror(errno));
    } else {
      const size_t rb = row_bytes(t.type, t.shape.back());
      const int64_t rows = static_cast<int64_t>(sizes[i] / rb);
      // About 16 MiB a chunk: big enough for fast writes, small next to any model.
      const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>((size_t{16} << 20) / rb));
      chunk.resize(static_cast<size_t>(std::min(rows, rows_per_chunk)) * rb);
      for (int64_t r = 0; r < rows; r += rows_per_chunk) {
        const int64_t n = std::min(rows_per_chunk, rows - r);
        if (auto st = t.source(r, n, chunk.data()); !st) {
          f.reset();
          std::error_code ec;
          std::filesystem::remove(tmp, ec);
          return st;
        }
        if (!put(chunk.data(), static_cast<size_t>(n) * rb)) return fail(std::strerror(errno));
      }
    }
    const size_t pad = (writer_alignment - sizes[i] % writer_alignment) % writer_alignment;
    if (pad && !put(zeros, pad)) return fail(std::strerror(errno));
  }
  if (std::fflush(f.get()) != 0) return fail(std::strerror(errno));
  f.reset();
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return fail("rename: " + ec.message());
  return {};
}

}  // namespace troupe::format
