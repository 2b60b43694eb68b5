#include "runtime/core/error.hpp"

namespace troupe {

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::io_error: return "io_error";
    case errc::not_found: return "not_found";
    case errc::truncated: return "truncated";
    case errc::bad_format: return "bad_format";
    case errc::unsupported_type: return "unsupported_type";
    case errc::unsupported_architecture: return "unsupported_architecture";
    case errc::shape_mismatch: return "shape_mismatch";
    case errc::out_of_memory: return "out_of_memory";
    case errc::no_kv_blocks: return "no_kv_blocks";
    case errc::context_overflow: return "context_overflow";
    case errc::unavailable: return "unavailable";
    case errc::internal: return "internal";
  }
  return "unknown";
}

std::string error::what() const { return std::string(to_string(code_)) + ": " + message_; }

}  // namespace troupe
