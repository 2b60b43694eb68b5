#pragma once
// Element types of weight tensors, with the numeric ids GGUF uses for them, and their block layouts.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace troupe {

/// Tensor element type. Values equal the GGML/GGUF type ids so a GGUF type field maps directly.
enum class dtype : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,   ///< blocks of 32: fp16 scale d, 16 bytes of nibbles; x = (q - 8) * d
  q8_0 = 8,   ///< blocks of 32: fp16 scale d, 32 int8; x = q * d
  bf16 = 30,
};

inline constexpr int qk = 32;  ///< elements per quantized block (Q4_0 and Q8_0)

struct block_q8_0 {
  uint16_t d;      ///< fp16 scale
  int8_t qs[qk];
};
static_assert(sizeof(block_q8_0) == 34);

struct block_q4_0 {
  uint16_t d;          ///< fp16 scale
  uint8_t qs[qk / 2];  ///< element j in the low nibble of qs[j], element j+16 in the high nibble
};
static_assert(sizeof(block_q4_0) == 18);

/// "f32", "f16", "bf16", "q8_0", "q4_0".
std::string_view to_string(dtype t) noexcept;
/// Parses a name as printed by to_string (case-insensitive); nullopt if unknown.
std::optional<dtype> parse_dtype(std::string_view name) noexcept;
/// Whether this build handles the GGML type id.
bool is_supported_ggml_type(uint32_t id) noexcept;
/// Elements per block (1 for float types).
int block_elems(dtype t) noexcept;
/// Bytes per block.
size_t block_bytes(dtype t) noexcept;
/// Bytes of a row of n elements (n must be a multiple of block_elems(t)).
inline size_t row_bytes(dtype t, int64_t n) noexcept {
  return static_cast<size_t>(n / block_elems(t)) * block_bytes(t);
}

// Scalar conversions (portable; the fast kernels use F16C where present).
float fp16_to_fp32(uint16_t h) noexcept;
uint16_t fp32_to_fp16(float f) noexcept;
inline float bf16_to_fp32(uint16_t h) noexcept {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/// Round-to-nearest-even, NaN kept quiet.
inline uint16_t fp32_to_bf16(float f) noexcept {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace troupe
