// Row-wise and element-wise ops: rms_norm, rope, silu_mul, add_inplace, kv_write, get_row.
// Threads are woken only where the work pays for the wake-up (a few microseconds at most).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/quant.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu {
namespace {

// Elements below which an element-wise op runs on the caller alone: at ~10 GB/s a thread moves
// 64K floats in ~25 us, well above the pool's ~1 us wake-up, while 2048-wide rows (~1 us) are not.
constexpr int64_t min_parallel_elems = 64 * 1024;

template <class F>
void maybe_parallel(thread_pool& pool, int64_t n, int64_t work, F&& fn) {
  if (pool.size() == 1 || work < min_parallel_elems || n < 2) {
    fn(int64_t{0}, n);
  } else {
    pool.parallel_for(n, fn);
  }
}

void rms_norm_row(const float* x, const float* weight, int64_t dim, float eps, float* y) {
  int64_t j = 0;
  float ss = 0.0f;
#if defined(__AVX2__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; j + 16 <= dim; j += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + j), v1 = _mm256_loadu_ps(x + j + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  ss = simd::hsum(_mm256_add_ps(a0, a1));
#endif
  for (; j < dim; ++j) ss += x[j] * x[j];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  j = 0;
#if defined(__AVX2__)
  const __m256 sv = _mm256_set1_ps(scale);
  for (; j + 8 <= dim; j += 8)
    _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), sv), _mm256_loadu_ps(weight + j)));
#endif
  for (; j < dim; ++j) y[j] = x[j] * scale * weight[j];
}

}  // namespace

void rms_norm(thread_pool& pool, const float* x, const float* weight, int64_t n_rows, int64_t dim,
              float eps, float* y) {
  maybe_parallel(pool, n_rows, n_rows * dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rms_norm_row(x + r * dim, weight, dim, eps, y + r * dim);
  });
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          rope_style style) {
  const int64_t half = head_dim / 2;
  // cos/sin once per call (per token), shared by every head. For the interleaved style they are
  // laid out per element: cs = (c0, c0, c1, c1, ..), sn = (-s0, s0, -s1, s1, ..).
  thread_local std::vector<float> cs, sn;
  cs.resize(static_cast<size_t>(head_dim));
  sn.resize(static_cast<size_t>(head_dim));
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(angle), s = std::sin(angle);
    if (style == rope_style::interleaved) {
      cs[2 * i] = cs[2 * i + 1] = c;
      sn[2 * i] = -s;
      sn[2 * i + 1] = s;
    } else {
      cs[i] = c;
      sn[i] = s;
    }
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    int64_t i = 0;
    if (style == rope_style::interleaved) {
#if defined(__AVX2__)
      for (; i + 8 <= head_dim; i += 8) {
        const __m256 v = _mm256_loadu_ps(xh + i);
        const __m256 swapped = _mm256_permute_ps(v, 0xB1);  // (x1, x0, x3, x2, ..)
        _mm256_storeu_ps(xh + i, _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(cs.data() + i)),
                                               _mm256_mul_ps(swapped, _mm256_loadu_ps(sn.data() + i))));
      }
#endif
      for (; i + 2 <= head_dim; i += 2) {
        const float x0 = xh[i], x1 = xh[i + 1];
        xh[i] = x0 * cs[i] + x1 * sn[i];
        xh[i + 1] = x1 * cs[i + 1] + x0 * sn[i + 1];
      }
    } else {
#if defined(__AVX2__)
      for (; i + 8 <= half; i += 8) {
        const __m256 x0 = _mm256_loadu_ps(xh + i), x1 = _mm256_loadu_ps(xh + i + half);
        const __m256 c = _mm256_loadu_ps(cs.data() + i), s = _mm256_loadu_ps(sn.data() + i);
        _mm256_storeu_ps(xh + i, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
        _mm256_storeu_ps(xh + i + half, _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c)));
      }
#endif
      for (; i < half; ++i) {
        const float x0 = xh[i], x1 = xh[i + half];
        xh[i] = x0 * cs[i] - x1 * sn[i];
        xh[i + half] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void silu_mul(thread_pool& pool, const float* gate, const float* up, int64_t n, float* out) {
  maybe_parallel(pool, n, n, [&](int64_t b, int64_t e) {
    int64_t i = b;
#if defined(__AVX2__)
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= e; i += 8) {
      const __m256 g = _mm256_loadu_ps(gate + i);
      const __m256 den = _mm256_add_ps(one, simd::exp(_mm256_sub_ps(_mm256_setzero_ps(), g)));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_loadu_ps(up + i)));
    }
    if (i < e) {
      // The tail goes through the same vector code on a padded copy: an element's value must not
      // depend on where the array (a whole batch of rows) ends, or batch-mates would change results.
      alignas(32) float g8[8] = {}, u8[8] = {};
      const int64_t r = e - i;
      std::memcpy(g8, gate + i, static_cast<size_t>(r) * sizeof(float));
      std::memcpy(u8, up + i, static_cast<size_t>(r) * sizeof(float));
      const __m256 g = _mm256_load_ps(g8);
      const __m256 den = _mm256_add_ps(one, simd::exp(_mm256_sub_ps(_mm256_setzero_ps(), g)));
      _mm256_store_ps(g8, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_load_ps(u8)));
      std::memcpy(out + i, g8, static_cast<size_t>(r) * sizeof(float));
    }
#else
    for (; i < e; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
#endif
  });
}

void add_inplace(thread_pool& pool, float* x, const float* y, int64_t n) {
  maybe_parallel(pool, n, n, [&](int64_t b, int64_t e) {
    int64_t i = b;
#if defined(__AVX2__)
    for (; i + 8 <= e; i += 8)
      _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < e; ++i) x[i] += y[i];
  });
}

void kv_write(const kv_layer_view& kv, const int32_t* block_table, int64_t pos, const float* k,
              const float* v) {
  const int64_t width = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim;
  const int64_t slot = static_cast<int64_t>(block_table[pos / kv.block_size]) * kv.block_size + pos % kv.block_size;
  std::memcpy(kv.k + slot * width, k, static_cast<size_t>(width) * sizeof(float));
  std::memcpy(kv.v + slot * width, v, static_cast<size_t>(width) * sizeof(float));
}

void get_row(const weight_ref& w, int64_t r, float* out) {
  const auto* row = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * row_bytes(w.type, w.cols);
  switch (w.type) {
    case dtype::f16: simd::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(row), out, w.cols); return;
    case dtype::bf16: simd::bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(row), out, w.cols); return;
    default: dequantize_row(w.type, row, out, w.cols); return;
  }
}

}  // namespace troupe::cpu
