#pragma once
// GGUF v2/v3 reader (memory-mapped, every offset and length bounds-checked) and writer.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/dtype.hpp"
#include "runtime/core/error.hpp"

namespace troupe::format {

/// A GGUF metadata value. Integers keep their signedness; arrays nest.
struct gguf_value {
  std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, std::vector<gguf_value>> v;

  std::optional<int64_t> as_int() const;     ///< any integer type (or bool) that fits in int64
  std::optional<double> as_float() const;    ///< any numeric type
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;      ///< nullptr unless a string
  const std::vector<gguf_value>* as_array() const;  ///< nullptr unless an array
};

/// GGML's name of a type id ("F32", "Q4_K", ...; "unknown" past the known ids).
const char* ggml_type_name(uint32_t id) noexcept;

/// One tensor of a GGUF file. shape is outermost first (numpy order): a matrix of R rows of C
/// elements is {R, C} (GGUF itself stores ne reversed: ne[0] = C).
struct gguf_tensor {
  std::string name;
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;       ///< from the start of the data section
  size_t nbytes = 0;
  const void* data = nullptr;  ///< into the mapping, valid while the gguf_file lives
};

class gguf_file {
 public:
  /// Maps and parses the file. Errors name the path and what is wrong (truncated, bad magic,
  /// unsupported version, a key given twice, a tensor of an unsupported type with its name and type,
  /// tensor data regions that leave the file, overlap, or do not tile the data section the way
  /// their types and shapes imply).
  static expected<std::shared_ptr<const gguf_file>> open(const std::filesystem::path& path);
  /// Parses GGUF bytes already in memory (what open() does after mapping; a fuzzer's entry point).
  /// owner keeps [data, data + size) alive as long as the result; name stands for the file in errors.
  static expected<std::shared_ptr<const gguf_file>> parse(std::shared_ptr<const void> owner, const uint8_t* data,
                                                          size_t size, const std::filesystem::path& name);

  uint32_t version() const noexcept { return version_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  /// nullptr if absent.
  const gguf_value* find(std::string_view key) const;
  const std::map<std::string, gguf_value, std::less<>>& metadata() const noexcept { return kv_; }
  const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }
  /// nullptr if absent.
  const gguf_tensor* tensor(std::string_view name) const;
  /// Alignment of the tensor data (general.alignment, default 32).
  uint32_t alignment() const noexcept { return alignment_; }
  /// File offset where the tensor data section begins.
  uint64_t data_offset() const noexcept { return data_offset_; }
  /// The mapping the tensors point into (keep it to keep tensor data alive without the file object).
  const std::shared_ptr<const void>& mapping() const noexcept { return mapping_; }

  ~gguf_file();

 private:
  gguf_file() = default;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::filesystem::path path_;
  std::map<std::string, gguf_value, std::less<>> kv_;
  std::vector<gguf_tensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  std::shared_ptr<const void> mapping_;
};

/// Builds a GGUF v3 file: metadata in insertion order, then tensors aligned to 32 bytes.
/// Tensors are given either as bytes or as a row source that write() calls a chunk of rows at a time,
/// so a model larger than memory can be written (only one chunk is held at once).
class gguf_writer {
 public:
  /// Fills rows [first, first + n) of a tensor at dst (row_bytes(type, shape.back()) bytes a row).
  using row_source = std::function<status(int64_t first, int64_t n, void* dst)>;

  /// Adds or replaces a key. The GGUF type is chosen from the value: signed integers as INT32
  /// (INT64 if one does not fit), unsigned as UINT32 (UINT64), floats as FLOAT32, arrays likewise.
  void set(std::string key, gguf_value value);
  /// Typed helpers (GGUF types: uint32, float32, string, bool, arrays of string/float32/int32).
  void set_u32(std::string key, uint32_t v);
  void set_f32(std::string key, float v);
  void set_str(std::string key, std::string v);
  void set_bool(std::string key, bool v);
  /// Adds a tensor; bytes must be row_bytes(type, shape.back()) * rows.
  void add_tensor(std::string name, dtype type, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  /// Adds a tensor whose rows are produced by source during write().
  void add_tensor(std::string name, dtype type, std::vector<int64_t> shape, row_source source);
  /// Writes the file (to a temporary beside it, renamed into place on success).
  status write(const std::filesystem::path& path) const;

 private:
  std::vector<std::pair<std::string, gguf_value>> kv_;
  struct tensor_entry {
    std::string name;
    dtype type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    row_source source;  ///< used when set, instead of bytes
  };
  std::vector<tensor_entry> tensors_;
};

}  // namespace troupe::format
