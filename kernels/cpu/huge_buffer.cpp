#include "kernels/cpu/huge_buffer.hpp"

#include <cstring>
#include <utility>

#include <sys/mman.h>

namespace troupe::cpu {
namespace {
constexpr size_t huge_page = size_t{2} << 20;
}

huge_buffer huge_buffer::allocate(size_t bytes, bool populate) {
  huge_buffer b;
  if (bytes == 0) return b;
  // Small buffers are not worth a huge page of slack; big ones get one page of room to align.
  const bool huge = bytes >= huge_page;
  const size_t span = huge ? (bytes + huge_page - 1) / huge_page * huge_page : bytes;
  const size_t map_bytes = huge ? span + huge_page : span;
  void* map = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return b;
  auto* data = static_cast<uint8_t*>(map);
  if (huge) {
    const auto addr = reinterpret_cast<uintptr_t>(map);
    data += (huge_page - addr % huge_page) % huge_page;
#if defined(MADV_HUGEPAGE)
    ::madvise(data, span, MADV_HUGEPAGE);  // best effort: without it the pages are ordinary ones
#endif
  }
  if (populate) {
#if defined(MADV_POPULATE_WRITE)
    const bool done = ::madvise(data, bytes, MADV_POPULATE_WRITE) == 0;  // Linux 5.14
#else
    const bool done = false;
#endif
    if (!done) std::memset(data, 0, bytes);
  }
  b.map_ = map;
  b.map_bytes_ = map_bytes;
  b.data_ = data;
  b.bytes_ = bytes;
  return b;
}

huge_buffer huge_buffer::copy_of(const void* src, size_t bytes) {
  huge_buffer b = allocate(bytes);
  if (b) std::memcpy(b.data_, src, bytes);
  return b;
}

huge_buffer::huge_buffer(huge_buffer&& o) noexcept
    : map_(std::exchange(o.map_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      data_(std::exchange(o.data_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)) {}

huge_buffer& huge_buffer::operator=(huge_buffer&& o) noexcept {
  if (this != &o) {
    reset();
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

huge_buffer::~huge_buffer() { reset(); }

void huge_buffer::reset() noexcept {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  data_ = nullptr;
  bytes_ = 0;
}

bool huge_buffer::holds(const void* p) const noexcept {
  const auto* c = static_cast<const uint8_t*>(p);
  return data_ && c >= data_ && c < data_ + bytes_;
}

}  // namespace troupe::cpu
