#pragma once
// Memory for the big arrays a step streams through: the weights the runtime copies at load
// (repacked, sliced for a tensor-parallel rank, or moved out of the mapped file) and the KV pool.
// Decode streams every weight once per token; from a file mapping that is a TLB miss every 4 KiB,
// since the page cache of a regular file is not mapped with huge pages. Anonymous memory, 2 MiB
// aligned and advised for transparent huge pages (MADV_HUGEPAGE, which the usual `madvise` THP
// setting honours), reads the same bytes with far fewer misses.

#include <cstddef>
#include <cstdint>

namespace troupe::cpu {

/// An owned, zero-initialised buffer in huge-page-advised anonymous memory.
/// Move-only; empty (get() == nullptr) when the allocation failed or nothing was asked for.
class huge_buffer {
 public:
  huge_buffer() = default;
  /// bytes of memory (a size of 0 gives an empty buffer). populate: fault every page in now (so the
  /// first step that writes there does not pay for zeroing and compacting huge pages); otherwise
  /// pages are committed on first touch.
  static huge_buffer allocate(size_t bytes, bool populate = false);
  /// A copy of [src, src + bytes); empty when the allocation failed.
  static huge_buffer copy_of(const void* src, size_t bytes);

  huge_buffer(huge_buffer&& o) noexcept;
  huge_buffer& operator=(huge_buffer&& o) noexcept;
  huge_buffer(const huge_buffer&) = delete;
  huge_buffer& operator=(const huge_buffer&) = delete;
  ~huge_buffer();

  uint8_t* get() const noexcept { return data_; }
  size_t size() const noexcept { return bytes_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }
  /// Whether p points into this buffer.
  bool holds(const void* p) const noexcept;

 private:
  void reset() noexcept;
  void* map_ = nullptr;  ///< the whole mapping (data_ is its first 2 MiB boundary)
  size_t map_bytes_ = 0;
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace troupe::cpu
