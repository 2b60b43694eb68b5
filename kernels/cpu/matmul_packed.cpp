// Q8_0 and Q4_0 weights repacked for AVX-512 VNNI (pack_weight), times Q8_0 activations.
//
// Layout: rows are taken in groups of 8 (the last group padded with zero rows). For group g and
// block b: the 8 rows' fp16 scales, then the quants as 32-byte vectors whose int32 lane i holds 4
// bytes of row 8g+i. Q8_0: 8 vectors, vector k = elements 4k..4k+3 stored as unsigned w + 128.
// Q4_0: 4 vectors of the packed nibbles (already w + 8), vector v giving elements 4v..4v+3 (low
// nibbles) and 16+4v.. (high). One dpbusd of such a vector with the token's 4 matching bytes
// broadcast to every lane adds 4 products to each of the 8 rows, so after a block lane i holds row
// 8g+i's whole block dot (plus offset * sum(x), cancelled by starting from the precomputed
// -offset * sum(x)). A block then costs one conversion, one multiply and one FMA per 8 rows instead
// of per row, and no horizontal sums at all.
//
// A group's blocks are contiguous, so a thread walking its groups streams memory in order, as the
// decode path needs; the bytes are the same as the original rows' (34 or 18 per row and block).
//
// Determinism: lane i accumulates acc += float(dot_b) * (d_w * d_x) in block order whatever the tile
// shape (groups x tokens), so a token's outputs do not depend on its batch or on the thread count.
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/matmul_internal.hpp"
#include "kernels/cpu/quant.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu {

#if defined(TROUPE_Q_PACKED)

namespace detail {
namespace {

constexpr int64_t group_scale_bytes = packed_rows * 2;  // 8 fp16 scales open every (group, block)

/// Q8_0: 8 vectors of 32 bytes per (group, block); vector k is chunk k (elements 4k..4k+3).
struct q8_format {
  static constexpr int64_t quant_bytes = packed_rows * qk;  // 256
  static __m256i chunk(const uint8_t* q, int k) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * k));
  }
};

/// Q4_0: 4 vectors of 32 bytes per (group, block) holding, in lane i, bytes 4v..4v+3 of row i's
/// nibbles: the low nibbles are elements 4v..4v+3 (chunk v), the high ones 16+4v.. (chunk v + 4).
/// Nibbles are w + 8 already, the unsigned operand dpbusd wants.
struct q4_format {
  static constexpr int64_t quant_bytes = packed_rows * qk / 2;  // 128
  static __m256i chunk(const uint8_t* q, int k) noexcept {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * (k & 3)));
    return _mm256_and_si256(k < 4 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f));
  }
};

template <class F>
struct packed_view {
  static constexpr int64_t block_bytes = group_scale_bytes + F::quant_bytes;
  const uint8_t* base;  // [groups][nb][8 fp16 scales, then the quant vectors]
  int64_t nb;
  const uint8_t* block(int64_t g, int64_t b) const noexcept { return base + (g * nb + b) * block_bytes; }
};

/// Groups [g, g + G) x tokens [t0, t0 + NT): G * NT vectors of 8 row sums.
template <class F, int G, int NT>
inline void packed_tile(const packed_view<F>& w, const q8_activations& x, int64_t g, int64_t t0, int64_t rows,
                        float* y) {
  const int64_t nb = w.nb;
  __m256 acc[G][NT];
#pragma GCC unroll 8
  for (int i = 0; i < G; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  const int8_t* xq = x.qs + t0 * nb * qk;
  const float* xd = x.d + t0 * nb;
  const int32_t* xc = x.corr + t0 * nb;
  // With few (group, token) pairs the 8 dependent dpbusd of a block would wait on each other's
  // latency; then each pair gets P independent partial sums, added at the end (exact in int32, so
  // the result is the same for every P).
  constexpr int P = G * NT >= 4 ? 1 : G * NT >= 2 ? 2 : 4;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i dot[P][G][NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m256i init = _mm256_set1_epi32(xc[t * nb + b]);
#pragma GCC unroll 8
      for (int i = 0; i < G; ++i) {
        dot[0][i][t] = init;
#pragma GCC unroll 4
        for (int p = 1; p < P; ++p) dot[p][i][t] = _mm256_setzero_si256();
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      __m256i wv[G];
#pragma GCC unroll 8
      for (int i = 0; i < G; ++i)
        wv[i] = F::chunk(w.block(g + i, b) + group_scale_bytes, k);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        int32_t x4;
        std::memcpy(&x4, xq + (t * nb + b) * qk + 4 * k, 4);
        const __m256i xv = _mm256_set1_epi32(x4);
#pragma GCC unroll 8
        for (int i = 0; i < G; ++i) dot[k % P][i][t] = _mm256_dpbusd_epi32(dot[k % P][i][t], wv[i], xv);
      }
    }
#pragma GCC unroll 4
    for (int p = 1; p < P; ++p)
#pragma GCC unroll 8
      for (int i = 0; i < G; ++i)
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) dot[0][i][t] = _mm256_add_epi32(dot[0][i][t], dot[p][i][t]);
#pragma GCC unroll 8
    for (int i = 0; i < G; ++i) {
      const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w.block(g + i, b))));
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t)
        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[0][i][t]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t * nb + b])), acc[i][t]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < G; ++i) {
    const int64_t r = (g + i) * packed_rows;
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      float* out = y + (t0 + t) * rows + r;
      if (r + packed_rows <= rows) {
        _mm256_storeu_ps(out, acc[i][t]);
      } else {
        alignas(32) float tmp[packed_rows];
        _mm256_store_ps(tmp, acc[i][t]);
        std::memcpy(out, tmp, static_cast<size_t>(rows - r) * sizeof(float));
      }
    }
  }
}

// Tile: 2 groups (16 rows) x 6 tokens keeps 12 int32 and 12 float accumulators, 2 weight vectors
// and the broadcast in the 32 AVX-512 registers.
constexpr int tile_groups = 2, tile_tokens = 6;

template <class F, int G>
inline void packed_token_tiles(const packed_view<F>& w, const q8_activations& x, int64_t g, int64_t t0, int64_t t1,
                               int64_t rows, float* y) {
  int64_t t = t0;
  for (; t + tile_tokens <= t1; t += tile_tokens) packed_tile<F, G, tile_tokens>(w, x, g, t, rows, y);
  switch (t1 - t) {
    case 1: packed_tile<F, G, 1>(w, x, g, t, rows, y); break;
    case 2: packed_tile<F, G, 2>(w, x, g, t, rows, y); break;
    case 3: packed_tile<F, G, 3>(w, x, g, t, rows, y); break;
    case 4: packed_tile<F, G, 4>(w, x, g, t, rows, y); break;
    case 5: packed_tile<F, G, 5>(w, x, g, t, rows, y); break;
    default: break;
  }
}

template <class F>
void packed_rows_fn(const weight_ref& wr, const q8_activations& x, int64_t n_tokens, int64_t r0, int64_t r1,
                    float* y) {
  const packed_view<F> w{static_cast<const uint8_t*>(wr.packed), wr.cols / qk};
  const int64_t g0 = r0 / packed_rows, g1 = (r1 + packed_rows - 1) / packed_rows;
  for (int64_t c0 = 0; c0 < n_tokens; c0 += token_chunk) {
    const int64_t c1 = std::min(n_tokens, c0 + token_chunk);
    int64_t g = g0;
    // A lone token has no weight reuse to gain from two groups; one group keeps a single stream.
    if (c1 - c0 > 1)
      for (; g + tile_groups <= g1; g += tile_groups) packed_token_tiles<F, tile_groups>(w, x, g, c0, c1, wr.rows, y);
    for (; g < g1; ++g) packed_token_tiles<F, 1>(w, x, g, c0, c1, wr.rows, y);
  }
}

}  // namespace

void matmul_rows_packed(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0, int64_t r1,
                        float* y) {
  if (w.type == dtype::q8_0)
    packed_rows_fn<q8_format>(w, x, n_tokens, r0, r1, y);
  else
    packed_rows_fn<q4_format>(w, x, n_tokens, r0, r1, y);
}

}  // namespace detail

packed_weight pack_weight(const weight_ref& w) {
  packed_weight out;
  const bool q8 = w.type == dtype::q8_0;
  if ((!q8 && w.type != dtype::q4_0) || w.rows <= 0 || w.cols <= 0 || w.cols % qk != 0 || !w.data) return out;
  using detail::packed_rows;
  const int64_t nb = w.cols / qk;
  const int64_t groups = (w.rows + packed_rows - 1) / packed_rows;
  const int64_t packed_block_bytes = q8 ? detail::packed_view<detail::q8_format>::block_bytes
                                 : detail::packed_view<detail::q4_format>::block_bytes;
  out.data = huge_buffer::allocate(static_cast<size_t>(groups * nb * packed_block_bytes));
  if (!out.data) return out;
  const size_t stride = row_bytes(w.type, w.cols), src_block = block_bytes(w.type);
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = out.data.get() + (g * nb + b) * packed_block_bytes;
      auto* scales = reinterpret_cast<uint16_t*>(dst);
      uint8_t* q = dst + detail::group_scale_bytes;
      for (int64_t i = 0; i < packed_rows; ++i) {
        const int64_t r = g * packed_rows + i;
        // Padding rows: zero weights (128 unsigned for Q8_0, nibble 8 for Q4_0) and a zero scale.
        const uint8_t* blk = r < w.rows ? src + static_cast<size_t>(r) * stride + static_cast<size_t>(b) * src_block : nullptr;
        uint16_t d = 0;
        if (blk) std::memcpy(&d, blk, 2);
        scales[i] = d;
        const int vectors = q8 ? 8 : 4;
        for (int k = 0; k < vectors; ++k)
          for (int j = 0; j < 4; ++j) {
            uint8_t v = q8 ? 0x80 : 0x88;
            if (blk) v = q8 ? static_cast<uint8_t>(blk[2 + 4 * k + j] ^ 0x80u) : blk[2 + 4 * k + j];
            q[32 * k + 4 * i + j] = v;
          }
      }
    }
  }
  return out;
}

#else

packed_weight pack_weight(const weight_ref&) { return {}; }

#endif

}  // namespace troupe::cpu
