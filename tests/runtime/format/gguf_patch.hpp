#pragma once
// Test helper: the bytes of a GGUF file with fields overwritten in place, to make files no writer
// would (a tensor relabelled, offsets moved) from a real one.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::testing {

class gguf_patch {
 public:
  explicit gguf_patch(std::vector<char> bytes) : bytes_(std::move(bytes)) {}

  template <class T>
  void put(size_t at, T v) { std::memcpy(bytes_.data() + at, &v, sizeof(T)); }
  template <class T>
  T get(size_t at) const {
    T v;
    std::memcpy(&v, bytes_.data() + at, sizeof(T));
    return v;
  }
  /// Where the info of a tensor starts (its name's length field); throws if the name is absent.
  size_t tensor_info(const std::string& name) const {
    std::string needle(8, '\0');
    const uint64_t n = name.size();
    std::memcpy(needle.data(), &n, 8);
    needle += name;
    auto it = std::search(bytes_.begin(), bytes_.end(), needle.begin(), needle.end());
    if (it == bytes_.end()) throw std::runtime_error("no tensor info for '" + name + "'");
    return static_cast<size_t>(it - bytes_.begin());
  }
  /// Where the type and the offset fields of a tensor's info lie.
  size_t type_field(const std::string& name) const {
    const size_t dims_at = tensor_info(name) + 8 + name.size();
    return dims_at + 4 + 8 * get<uint32_t>(dims_at);
  }
  size_t offset_field(const std::string& name) const { return type_field(name) + 4; }

  std::vector<char>& bytes() { return bytes_; }
  const std::vector<char>& bytes() const { return bytes_; }

 private:
  std::vector<char> bytes_;
};

}  // namespace troupe::testing
