#pragma once
// The integer-dot-product kernel shared by the Q8_0 and Q4_0 matmuls (internal header). A weight
// "loader" turns one 32-element block into 32 signed bytes and a float scale; the kernel multiplies
// it with Q8_0 activations as llama.cpp does: an exact int32 dot per block, then acc += dot * d_w * d_x
// in 8 float lanes per (row, token). A tile of NR rows x NT tokens shares each loaded block.
//
// With AVX-512 VNNI, dpbusd multiplies unsigned by signed bytes: the loader gives the weights as
// unsigned u = w + offset (q8_0: w ^ 0x80, offset 128; q4_0: the raw nibbles, offset 8) and each
// accumulation starts at -offset * sum(x), precomputed per activation block, so that
// dpbusd = dot(w, x) exactly with one instruction per (row, token, block).
//
// Loader concept:
//   static constexpr size_t bytes;                    // bytes per block
//   static constexpr int32_t offset;                  // u = w + offset
//   static __m256i quants_u8(const uint8_t* block);   // 32 values w + offset (VNNI builds)
//   static __m256i quants(const uint8_t* block);      // 32 signed values (AVX2 builds)
//   static void quants(const uint8_t* block, int8_t out[32]);  // portable builds
//   static float scale(const uint8_t* block);

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_internal.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu::detail {

/// The fp16 scale d that opens every Q8_0 and Q4_0 block, as float.
inline float block_scale(const uint8_t* blk) noexcept {
  uint16_t d;
  std::memcpy(&d, blk, 2);
  return simd::half_to_float(d);
}

#if defined(__AVX2__)

// Blocks per scale group: the products d_w * d_x of a group are computed with one vector multiply
// per (row, token) and stored, so the per-block update is a fused multiply-add whose scale operand
// is a broadcast from memory (free on the load ports) instead of a multiply and a broadcast.
inline constexpr int scale_group = 8;

template <class L, int NR, int NT>
inline void q_tile(const uint8_t* w, size_t row_stride, const q8_activations& x, int64_t t0,
                   int64_t rows, int64_t r0, float* y) {
  const int64_t nb = x.nb;
  __m256 acc[NR][NT];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();

  const int8_t* xq = x.qs + t0 * nb * qk;
  const float* xd = x.d + t0 * nb;
  [[maybe_unused]] const int32_t* xc = x.corr + t0 * nb;
  alignas(32) float dw[NR][scale_group];
  alignas(32) float scales[NR][NT][scale_group];
  for (int64_t b0 = 0; b0 < nb; b0 += scale_group) {
    const int g = static_cast<int>(std::min<int64_t>(scale_group, nb - b0));
    if (g == scale_group) {
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
        for (int j = 0; j < scale_group; ++j) dw[r][j] = L::scale(w + r * row_stride + (b0 + j) * L::bytes);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const __m256 dwv = _mm256_load_ps(dw[r]);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t)
          _mm256_store_ps(scales[r][t], _mm256_mul_ps(dwv, _mm256_loadu_ps(xd + t * nb + b0)));
      }
    } else {
      for (int r = 0; r < NR; ++r)
        for (int j = 0; j < g; ++j) {
          const float d = L::scale(w + r * row_stride + (b0 + j) * L::bytes);
          for (int t = 0; t < NT; ++t) scales[r][t][j] = d * xd[t * nb + b0 + j];
        }
    }
    for (int j = 0; j < g; ++j) {
      const int64_t b = b0 + j;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      __m256i wu[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) wu[r] = L::quants_u8(w + r * row_stride + b * L::bytes);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t * nb + b) * qk));
        // -offset * sum(x) in lane 0 (a zero-extending 32-bit load).
        const __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(xc[t * nb + b]));
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
          const __m256 dot = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(init, wu[r], xv));
          acc[r][t] = _mm256_fmadd_ps(dot, _mm256_broadcast_ss(&scales[r][t][j]), acc[r][t]);
        }
      }
#else
      // AVX2: maddubs wants an unsigned operand, so multiply |w| by x carrying w's sign.
      __m256i wq[NR], aw[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        wq[r] = L::quants(w + r * row_stride + b * L::bytes);
        aw[r] = _mm256_sign_epi8(wq[r], wq[r]);
      }
      const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t * nb + b) * qk));
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
          const __m256i p16 = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, wq[r]));
          const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
          acc[r][t] = _mm256_fmadd_ps(dot, _mm256_broadcast_ss(&scales[r][t][j]), acc[r][t]);
        }
      }
#endif
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) y[(t0 + t) * rows + r0 + r] = simd::hsum(acc[r][t]);
}

#else  // portable

template <class L, int NR, int NT>
inline void q_tile(const uint8_t* w, size_t row_stride, const q8_activations& x, int64_t t0,
                   int64_t rows, int64_t r0, float* y) {
  const int64_t nb = x.nb;
  float acc[NR][NT] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int8_t wq[NR][qk];
    float dw[NR];
    for (int r = 0; r < NR; ++r) {
      const uint8_t* blk = w + r * row_stride + b * L::bytes;
      L::quants(blk, wq[r]);
      dw[r] = L::scale(blk);
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* xv = x.qs + ((t0 + t) * nb + b) * qk;
      const float dx = x.d[(t0 + t) * nb + b];
      for (int r = 0; r < NR; ++r) {
        int32_t dot = 0;
        for (int j = 0; j < qk; ++j) dot += static_cast<int32_t>(wq[r][j]) * xv[j];
        acc[r][t] += static_cast<float>(dot) * (dw[r] * dx);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) y[(t0 + t) * rows + r0 + r] = acc[r][t];
}

#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define TROUPE_Q_GEMV 1
/// Rows per decode call: one. Interleaving several short rows (a row is a few KB) defeats the
/// hardware prefetcher and halves throughput (measured: 9.6 vs 18.6 GB/s on one Zen 4 thread).
inline constexpr int q_gemv_rows = 1;
/// One token against NR rows: the decode path. Same arithmetic per (row, token) as q_tile (the
/// same dpbusd, the same d_w * d_x product, the same FMA in block order), so a token's result is
/// bit-identical whichever path computes it, but without the tile's scale staging, which costs more
/// than it saves when there is only one token to share it with.
template <class L, int NR>
inline void q_gemv(const uint8_t* w, size_t row_stride, const q8_activations& x, int64_t t,
                   int64_t rows, int64_t r0, float* y) {
  const int64_t nb = x.nb;
  const int8_t* xq = x.qs + t * nb * qk;
  const float* xd = x.d + t * nb;
  const int32_t* xc = x.corr + t * nb;
  __m256 acc[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * qk));
    const __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(xc[b]));
    const float dx = xd[b];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const uint8_t* blk = w + r * row_stride + b * L::bytes;
      const __m256 dot = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(init, L::quants_u8(blk), xv));
      acc[r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(L::scale(blk) * dx), acc[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) y[t * rows + r0 + r] = simd::hsum(acc[r]);
}
#endif

/// Tokens [t0, t1) against NR rows starting at r0, in tiles of up to NT tokens.
template <class L, int NR, int NT>
inline void q_token_tiles(const uint8_t* w, size_t row_stride, const q8_activations& x, int64_t t0,
                          int64_t t1, int64_t rows, int64_t r0, float* y) {
  int64_t t = t0;
  for (; t + NT <= t1; t += NT) q_tile<L, NR, NT>(w, row_stride, x, t, rows, r0, y);
  switch (t1 - t) {
    case 1:
#if defined(TROUPE_Q_GEMV)
      q_gemv<L, NR>(w, row_stride, x, t, rows, r0, y);
#else
      q_tile<L, NR, 1>(w, row_stride, x, t, rows, r0, y);
#endif
      break;
    case 2: if constexpr (NT > 2) q_tile<L, NR, 2>(w, row_stride, x, t, rows, r0, y); break;
    case 3: if constexpr (NT > 3) q_tile<L, NR, 3>(w, row_stride, x, t, rows, r0, y); break;
    case 4: if constexpr (NT > 4) q_tile<L, NR, 4>(w, row_stride, x, t, rows, r0, y); break;
    case 5: if constexpr (NT > 5) q_tile<L, NR, 5>(w, row_stride, x, t, rows, r0, y); break;
    case 6: if constexpr (NT > 6) q_tile<L, NR, 6>(w, row_stride, x, t, rows, r0, y); break;
    case 7: if constexpr (NT > 7) q_tile<L, NR, 7>(w, row_stride, x, t, rows, r0, y); break;
    default: break;
  }
}

/// Rows [r0, r1) for all tokens: tiles of NR rows x NT tokens, token chunks kept in cache.
template <class L, int NR = q_tile_rows, int NT = q_tile_tokens>
inline void q_rows(const weight_ref& wr, const q8_activations& x, int64_t n_tokens, int64_t r0,
                   int64_t r1, float* y) {
  static_assert(NT <= 8, "q_token_tiles handles remainders up to 7");
  const size_t stride = row_bytes(wr.type, wr.cols);
  const auto* base = static_cast<const uint8_t*>(wr.data);
#if defined(TROUPE_Q_GEMV)
  if (n_tokens == 1) {  // decode: one sequential stream of rows per thread, as the prefetcher likes
    for (int64_t r = r0; r < r1; ++r) q_gemv<L, q_gemv_rows>(base + r * stride, stride, x, 0, wr.rows, r, y);
    return;
  }
#endif
  for (int64_t c0 = 0; c0 < n_tokens; c0 += token_chunk) {
    const int64_t c1 = std::min(n_tokens, c0 + token_chunk);
    int64_t r = r0;
    for (; r + NR <= r1; r += NR)
      q_token_tiles<L, NR, NT>(base + r * stride, stride, x, c0, c1, wr.rows, r, y);
    for (; r < r1; ++r) q_token_tiles<L, 1, NT>(base + r * stride, stride, x, c0, c1, wr.rows, r, y);
  }
}

}  // namespace troupe::cpu::detail
