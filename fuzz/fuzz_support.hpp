#pragma once
// What the harnesses share: the fuzz input as a file (the format readers and tokenizer loaders take
// paths), and a read of every byte a parser says is valid, so that a pointer or length past the
// mapping shows up as a crash rather than going unnoticed.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace troupe::fuzz {

/// The input as the contents of one in-memory file (a memfd, rewritten for every input), by a path
/// that open() and mmap() accept.
inline std::string as_file(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int f = memfd_create("troupe-fuzz", 0);
    if (f < 0) std::abort();
    return f;
  }();
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))) std::abort();
  return "/proc/self/fd/" + std::to_string(fd);
}

/// A directory of this process for harnesses whose parser reads a file by name (tokenizer.json).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/troupe-fuzz-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Reads every byte of [data, data + n): past the end of a mapping this faults.
inline void touch(const void* data, size_t n) {
  const auto* p = static_cast<const volatile uint8_t*>(data);
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) acc ^= p[i];
  static volatile uint8_t sink;
  sink = sink ^ acc;
}

/// Parsers log what they reject; a million rejections a minute would bury the fuzzer's own output.
inline void quiet_logs() {
  static const bool done = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)done;
}

/// The shared test models beside the checkout (../shared/models).
inline std::filesystem::path shared_models() { return std::filesystem::path(TROUPE_SHARED_DIR) / "models"; }

}  // namespace troupe::fuzz
