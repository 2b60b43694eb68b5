// Q8_0 weights repacked for AVX-512 VNNI (pack_weight), times Q8_0 activations.
//
// Layout: rows are taken in groups of 8 (the last group padded with zero rows). For group g and
// block b, 272 bytes: the 8 rows' fp16 scales, then 8 vectors of 32 bytes; vector k holds, in int32
// lane i, bytes 4k..4k+3 of row 8g+i's block b, stored as unsigned w + 128. One dpbusd of vector k
// with the token's bytes 4k..4k+3 broadcast to every lane adds 4 products to each of the 8 rows, so
// after the 8 vectors lane i holds row 8g+i's whole block dot (plus 128 * sum(x), cancelled by
// starting from the precomputed -128 * sum(x)). A block then costs one conversion, one multiply and
// one FMA per 8 rows instead of per row, and no horizontal sums at all.
//
// A group's blocks are contiguous, so a thread walking its groups streams memory in order, as the
// decode path needs (the same bytes as the original rows: 34 per row and block).
//
// Determinism: lane i accumulates acc += float(dot_b) * (d_w * d_x) in block order whatever the tile
// shape (groups x tokens), so a token's outputs do not depend on its batch or on the thread count.
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/matmul_internal.hpp"
#include "kernels/cpu/quant.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu {

void packed_weight::free_deleter::operator()(void* p) const noexcept { std::free(p); }

#if defined(TROUPE_Q8_PACKED)

namespace detail {
namespace {

constexpr int64_t group_quant_bytes = packed_rows * qk;  // 256 bytes of quants per (group, block)
constexpr int64_t group_scale_bytes = packed_rows * 2;   // 8 fp16 scales
constexpr int64_t group_block_bytes = group_scale_bytes + group_quant_bytes;

struct packed_view {
  const uint8_t* base;  // [groups][nb][8 fp16 scales, then 8 vectors x 8 lanes x 4 bytes]
  int64_t nb;
  const uint8_t* block(int64_t g, int64_t b) const noexcept { return base + (g * nb + b) * group_block_bytes; }
};

packed_view view_of(const weight_ref& w) { return {static_cast<const uint8_t*>(w.packed), w.cols / qk}; }

/// Groups [g, g + G) x tokens [t0, t0 + NT): G * NT vectors of 8 row sums.
template <int G, int NT>
inline void packed_tile(const packed_view& w, const q8_activations& x, int64_t g, int64_t t0, int64_t rows,
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
        wv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.block(g + i, b) + group_scale_bytes + 32 * k));
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

template <int G>
inline void packed_token_tiles(const packed_view& w, const q8_activations& x, int64_t g, int64_t t0, int64_t t1,
                               int64_t rows, float* y) {
  int64_t t = t0;
  for (; t + tile_tokens <= t1; t += tile_tokens) packed_tile<G, tile_tokens>(w, x, g, t, rows, y);
  switch (t1 - t) {
    case 1: packed_tile<G, 1>(w, x, g, t, rows, y); break;
    case 2: packed_tile<G, 2>(w, x, g, t, rows, y); break;
    case 3: packed_tile<G, 3>(w, x, g, t, rows, y); break;
    case 4: packed_tile<G, 4>(w, x, g, t, rows, y); break;
    case 5: packed_tile<G, 5>(w, x, g, t, rows, y); break;
    default: break;
  }
}

}  // namespace

void matmul_rows_q8_0_packed(const weight_ref& wr, const q8_activations& x, int64_t n_tokens, int64_t r0,
                             int64_t r1, float* y) {
  const packed_view w = view_of(wr);
  const int64_t g0 = r0 / packed_rows, g1 = (r1 + packed_rows - 1) / packed_rows;
  for (int64_t c0 = 0; c0 < n_tokens; c0 += token_chunk) {
    const int64_t c1 = std::min(n_tokens, c0 + token_chunk);
    int64_t g = g0;
    // A lone token has no weight reuse to gain from two groups; one group keeps a single stream.
    if (c1 - c0 > 1)
      for (; g + tile_groups <= g1; g += tile_groups) packed_token_tiles<tile_groups>(w, x, g, c0, c1, wr.rows, y);
    for (; g < g1; ++g) packed_token_tiles<1>(w, x, g, c0, c1, wr.rows, y);
  }
}

}  // namespace detail

packed_weight pack_weight(const weight_ref& w) {
  packed_weight out;
  if (w.type != dtype::q8_0 || w.rows <= 0 || w.cols <= 0 || w.cols % qk != 0 || !w.data) return out;
  const int64_t nb = w.cols / qk;
  const int64_t groups = (w.rows + detail::packed_rows - 1) / detail::packed_rows;
  out.bytes = static_cast<size_t>(groups * nb * detail::group_block_bytes);
  void* mem = std::aligned_alloc(64, (out.bytes + 63) / 64 * 64);
  if (!mem) {
    out.bytes = 0;
    return out;
  }
  out.data.reset(static_cast<uint8_t*>(mem));
  const size_t stride = row_bytes(w.type, w.cols);
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blkp = out.data.get() + (g * nb + b) * detail::group_block_bytes;
      auto* s = reinterpret_cast<uint16_t*>(blkp);
      uint8_t* q = blkp + detail::group_scale_bytes;
      for (int64_t i = 0; i < detail::packed_rows; ++i) {
        const int64_t r = g * detail::packed_rows + i;
        if (r >= w.rows) {  // padding row: zero weights (128 unsigned) and a zero scale
          s[i] = 0;
          for (int k = 0; k < 8; ++k) std::memset(q + 32 * k + 4 * i, 0x80, 4);
          continue;
        }
        block_q8_0 blk;
        std::memcpy(&blk, src + static_cast<size_t>(r) * stride + static_cast<size_t>(b) * sizeof(block_q8_0), sizeof blk);
        s[i] = blk.d;
        for (int k = 0; k < 8; ++k)
          for (int j = 0; j < 4; ++j) q[32 * k + 4 * i + j] = static_cast<uint8_t>(blk.qs[4 * k + j]) ^ 0x80u;
      }
    }
  }
  return out;
}

#else

packed_weight pack_weight(const weight_ref&) { return {}; }

#endif

}  // namespace troupe::cpu
