// Q4_0 weights x Q8_0 activations: nibbles unpacked to bytes and offset by -8, then the same
// integer kernel as Q8_0.
#include <cstring>

#include "kernels/cpu/matmul_q_kernel.hpp"

namespace troupe::cpu::detail {
namespace {

struct q4_0_loader {
  static constexpr size_t bytes = sizeof(block_q4_0);
  static constexpr int32_t offset = 8;
#if defined(__AVX2__)
  /// The nibbles as bytes 0..15 (w + 8). Element j is the low nibble of qs[j], j + 16 the high one.
  static __m256i quants_u8(const uint8_t* blk) noexcept {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
  }
  static __m256i quants(const uint8_t* blk) noexcept {
    return _mm256_sub_epi8(quants_u8(blk), _mm256_set1_epi8(8));
  }
#else
  static void quants(const uint8_t* blk, int8_t out[qk]) noexcept {
    for (int j = 0; j < qk / 2; ++j) {
      out[j] = static_cast<int8_t>((blk[2 + j] & 0x0f) - 8);
      out[j + qk / 2] = static_cast<int8_t>((blk[2 + j] >> 4) - 8);
    }
  }
#endif
  static float scale(const uint8_t* blk) noexcept { return block_scale(blk); }
};

}  // namespace

void matmul_rows_q4_0(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0,
                      int64_t r1, float* y) {
  q_rows<q4_0_loader>(w, x, n_tokens, r0, r1, y);
}

}  // namespace troupe::cpu::detail
