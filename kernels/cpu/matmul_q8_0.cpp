// Q8_0 weights x Q8_0 activations: the block already holds 32 signed bytes.
#include <cstring>

#include "kernels/cpu/matmul_q_kernel.hpp"

namespace troupe::cpu::detail {
namespace {

struct q8_0_loader {
  static constexpr size_t bytes = sizeof(block_q8_0);
  static constexpr int32_t offset = 128;
#if defined(__AVX2__)
  static __m256i quants_u8(const uint8_t* blk) noexcept {
    return _mm256_xor_si256(quants(blk), _mm256_set1_epi8(-128));
  }
  static __m256i quants(const uint8_t* blk) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  }
#else
  static void quants(const uint8_t* blk, int8_t out[qk]) noexcept { std::memcpy(out, blk + 2, qk); }
#endif
  static float scale(const uint8_t* blk) noexcept { return block_scale(blk); }
};

}  // namespace

void matmul_rows_q8_0(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0,
                      int64_t r1, float* y) {
  q_rows<q8_0_loader>(w, x, n_tokens, r0, r1, y);
}

}  // namespace troupe::cpu::detail
