#pragma once
// Read-only memory mapping of a whole file.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "runtime/core/error.hpp"

namespace troupe {

class mapped_file {
 public:
  /// Maps path read-only. Errors name the path (not_found, io_error).
  static expected<std::shared_ptr<const mapped_file>> open(const std::filesystem::path& path);
  ~mapped_file();
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;

  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

 private:
  mapped_file() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace troupe
