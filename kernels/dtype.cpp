#include "kernels/dtype.hpp"

#include <cctype>
#include <cmath>
#include <string>

namespace troupe {

std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::q8_0: return "q8_0";
    case dtype::q4_0: return "q4_0";
  }
  return "unknown";
}

std::optional<dtype> parse_dtype(std::string_view name) noexcept {
  std::string s(name);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0})
    if (s == to_string(t)) return t;
  return std::nullopt;
}

bool is_supported_ggml_type(uint32_t id) noexcept {
  return id == 0 || id == 1 || id == 2 || id == 8 || id == 30;
}

int block_elems(dtype t) noexcept { return (t == dtype::q8_0 || t == dtype::q4_0) ? qk : 1; }

size_t block_bytes(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
    case dtype::q8_0: return sizeof(block_q8_0);
    case dtype::q4_0: return sizeof(block_q4_0);
  }
  return 0;
}

float fp16_to_fp32(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) noexcept {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffff;
  if (absx > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (absx >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (absx < 0x38800000) {  // subnormal or zero in half precision
    float af;
    std::memcpy(&af, &absx, 4);
    // Scale so the half subnormal unit (2^-24) becomes 1, then round to nearest even.
    const float scaled = af * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // normal: round mantissa from 23 to 10 bits, nearest even
  uint32_t mant_round = absx + 0xfff + ((absx >> 13) & 1);
  return static_cast<uint16_t>(sign | ((mant_round - 0x38000000) >> 13));
}

}  // namespace troupe
