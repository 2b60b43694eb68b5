// F32, F16 and BF16 weights against f32 activations: convert a vector of weights to float (F16C /
// AVX-512 for f16, a 16-bit shift for bf16) and FMA into one accumulator per (row, token).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_internal.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu::detail {
namespace {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int64_t lanes = 16;
inline vec vzero() noexcept { return _mm512_setzero_ps(); }
inline vec vload(const float* p) noexcept { return _mm512_loadu_ps(p); }
inline vec vfma(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
inline vec vadd(vec a, vec b) noexcept { return _mm512_add_ps(a, b); }
#elif defined(__AVX2__)
using vec = __m256;
constexpr int64_t lanes = 8;
inline vec vzero() noexcept { return _mm256_setzero_ps(); }
inline vec vload(const float* p) noexcept { return _mm256_loadu_ps(p); }
inline vec vfma(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
inline vec vadd(vec a, vec b) noexcept { return _mm256_add_ps(a, b); }
#endif

struct f32_loader {
  using elem = float;
  static float scalar(const elem* p) noexcept { return *p; }
#if defined(__AVX2__)
  static vec load(const elem* p) noexcept { return vload(p); }
#endif
};

struct f16_loader {
  using elem = uint16_t;
  static float scalar(const elem* p) noexcept { return simd::half_to_float(*p); }
#if defined(__AVX512F__)
  static vec load(const elem* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
#elif defined(__AVX2__) && defined(__F16C__)
  static vec load(const elem* p) noexcept {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
#elif defined(__AVX2__)
  static vec load(const elem* p) noexcept {
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = fp16_to_fp32(p[i]);
    return _mm256_load_ps(f);
  }
#endif
};

struct bf16_loader {
  using elem = uint16_t;
  static float scalar(const elem* p) noexcept { return bf16_to_fp32(*p); }
#if defined(__AVX512F__)
  static vec load(const elem* p) noexcept {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
#elif defined(__AVX2__)
  static vec load(const elem* p) noexcept {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
#endif
};

// Each (row, token) has f_accs accumulators, vector k of a row going to accumulator k % f_accs: one
// FMA chain would cap a decode at one vector per FMA latency. A last partial group of vectors goes
// to the first accumulators, columns past the last full vector to a scalar sum added at the end.
// The order is the same in every tile shape, so the result per (row, token) never depends on the
// batch.
template <class L, int NR, int NT>
inline void f_tile(const typename L::elem* w, int64_t cols, const float* x, int64_t t0,
                   int64_t rows, int64_t r0, float* y) {
  int64_t c = 0;
#if defined(__AVX2__)
  vec acc[f_accs][NR][NT];
#pragma GCC unroll 8
  for (int k = 0; k < f_accs; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) acc[k][r][t] = vzero();
  auto step = [&](int k, int64_t col) __attribute__((always_inline)) {
    vec wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * cols + col);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const vec xv = vload(x + (t0 + t) * cols + col);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[k][r][t] = vfma(wv[r], xv, acc[k][r][t]);
    }
  };
  for (; c + f_accs * lanes <= cols; c += f_accs * lanes) {
#pragma GCC unroll 8
    for (int k = 0; k < f_accs; ++k) step(k, c + k * lanes);
  }
  for (int k = 0; c + lanes <= cols; ++k, c += lanes) step(k, c);
#endif
  const int64_t tail = c;
  for (int t = 0; t < NT; ++t) {
    for (int r = 0; r < NR; ++r) {
      float s = 0.0f;
      for (int64_t k = tail; k < cols; ++k) s += L::scalar(w + r * cols + k) * x[(t0 + t) * cols + k];
#if defined(__AVX2__)
      vec total = acc[0][r][t];
      for (int k = 1; k < f_accs; ++k) total = vadd(total, acc[k][r][t]);
      s = simd::hsum(total) + s;
#endif
      y[(t0 + t) * rows + r0 + r] = s;
    }
  }
}

template <class L, int NR, int NT>
inline void f_token_tiles(const typename L::elem* w, int64_t cols, const float* x, int64_t t0,
                          int64_t t1, int64_t rows, int64_t r0, float* y) {
  int64_t t = t0;
  for (; t + NT <= t1; t += NT) f_tile<L, NR, NT>(w, cols, x, t, rows, r0, y);
  switch (t1 - t) {
    case 1: f_tile<L, NR, 1>(w, cols, x, t, rows, r0, y); break;
    case 2: if constexpr (NT > 2) f_tile<L, NR, 2>(w, cols, x, t, rows, r0, y); break;
    case 3: if constexpr (NT > 3) f_tile<L, NR, 3>(w, cols, x, t, rows, r0, y); break;
    case 4: if constexpr (NT > 4) f_tile<L, NR, 4>(w, cols, x, t, rows, r0, y); break;
    case 5: if constexpr (NT > 5) f_tile<L, NR, 5>(w, cols, x, t, rows, r0, y); break;
    case 6: if constexpr (NT > 6) f_tile<L, NR, 6>(w, cols, x, t, rows, r0, y); break;
    case 7: if constexpr (NT > 7) f_tile<L, NR, 7>(w, cols, x, t, rows, r0, y); break;
    default: break;
  }
}

/// Rows interleaved per decode call (see q_gemv_rows).
constexpr int f_gemv_rows = 1;

template <class L, int NR = f_tile_rows, int NT = f_tile_tokens>
void f_rows(const weight_ref& wr, const float* x, int64_t n_tokens, int64_t r0, int64_t r1, float* y) {
  const auto* base = static_cast<const typename L::elem*>(wr.data);
  const int64_t cols = wr.cols;
  if (n_tokens == 1) {  // decode: few row streams per thread, as the hardware prefetcher likes
    int64_t r = r0;
    for (; r + f_gemv_rows <= r1; r += f_gemv_rows) f_tile<L, f_gemv_rows, 1>(base + r * cols, cols, x, 0, wr.rows, r, y);
    for (; r < r1; ++r) f_tile<L, 1, 1>(base + r * cols, cols, x, 0, wr.rows, r, y);
    return;
  }
  // Fewer tokens per chunk than the quantized path: f32 activations are 4x larger.
  constexpr int64_t chunk = token_chunk / 4;
  for (int64_t c0 = 0; c0 < n_tokens; c0 += chunk) {
    const int64_t c1 = std::min(n_tokens, c0 + chunk);
    int64_t r = r0;
    for (; r + NR <= r1; r += NR) f_token_tiles<L, NR, NT>(base + r * cols, cols, x, c0, c1, wr.rows, r, y);
    for (; r < r1; ++r) f_token_tiles<L, 1, NT>(base + r * cols, cols, x, c0, c1, wr.rows, r, y);
  }
}

}  // namespace

void matmul_rows_float(const weight_ref& w, const float* x, int64_t n_tokens, int64_t r0, int64_t r1,
                       float* y) {
  switch (w.type) {
    case dtype::f32: f_rows<f32_loader>(w, x, n_tokens, r0, r1, y); return;
    case dtype::f16: f_rows<f16_loader>(w, x, n_tokens, r0, r1, y); return;
    case dtype::bf16: f_rows<bf16_loader>(w, x, n_tokens, r0, r1, y); return;
    default: return;
  }
}

}  // namespace troupe::cpu::detail
