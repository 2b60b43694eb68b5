// matmul: picks the kernel for the weight type, quantizes the activations for the integer kernels,
// and splits rows across the pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_internal.hpp"
#include "kernels/cpu/quant.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu {
namespace detail {

void quantize_activations(const float* x, int64_t cols, int64_t t0, int64_t t1, int8_t* qs, float* d,
                          int32_t* corr, int32_t corr_offset) {
  const int64_t nb = cols / qk;
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + t * cols + b * qk;
      int8_t* qb = qs + (t * nb + b) * qk;
#if defined(__AVX2__)
      __m256 v[4];
      const __m256 sign_bit = _mm256_set1_ps(-0.0f);
      __m256 amax = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xb + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v[i]));
      }
      __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      m = _mm_max_ps(m, _mm_movehl_ps(m, m));
      m = _mm_max_ss(m, _mm_movehdup_ps(m));
      const float dv = _mm_cvtss_f32(m) / 127.0f;
      const uint16_t dh = fp32_to_fp16(dv);
      d[t * nb + b] = simd::half_to_float(dh);
      const __m256 id = _mm256_set1_ps(dv != 0.0f ? 1.0f / dv : 0.0f);
      __m256i q[4];
      for (int i = 0; i < 4; ++i) {
        // roundf (half away from zero), as ggml's reference quantizer: truncate, then step away
        // from zero when the dropped fraction is at least one half.
        const __m256 s = _mm256_mul_ps(v[i], id);
        const __m256 tr = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(s, tr));
        const __m256 away = _mm256_or_ps(_mm256_and_ps(s, sign_bit), _mm256_set1_ps(1.0f));
        const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), away);
        q[i] = _mm256_cvtps_epi32(_mm256_add_ps(tr, up));
      }
      const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
      const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
      __m256i p8 = _mm256_packs_epi16(p16a, p16b);
      p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb), p8);
      // Sum of the 32 values: the int32 lanes of q[] hold them before packing.
      const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      corr[t * nb + b] = -corr_offset * _mm_cvtsi128_si32(s4);
#else
      block_q8_0 blk;
      quantize_row_q8_0(xb, &blk, qk);
      d[t * nb + b] = fp16_to_fp32(blk.d);
      std::memcpy(qb, blk.qs, qk);
      int32_t sum = 0;
      for (int j = 0; j < qk; ++j) sum += blk.qs[j];
      corr[t * nb + b] = -corr_offset * sum;
#endif
    }
  }
}

}  // namespace detail

namespace {

// Below this many weight elements a matmul runs on the caller alone: waking the pool costs more.
constexpr int64_t min_parallel_elems = 32 * 1024;
// Below this many activation elements the caller quantizes them alone.
constexpr int64_t min_parallel_quantize = 16 * 1024;
// Rows go to threads in multiples of the kernel's row tile, so only the last range has a tail.
template <class F>
void split_rows(thread_pool& pool, const weight_ref& w, int64_t row_tile, F&& rows_fn) {
  const int64_t n_tiles = (w.rows + row_tile - 1) / row_tile;
  if (pool.size() == 1 || w.rows * w.cols < min_parallel_elems) {
    rows_fn(0, w.rows);
    return;
  }
  // Contiguous row ranges so each thread streams one span of the weights.
  pool.run([&](int ith, int nth) {
    const int64_t r0 = std::min(w.rows, n_tiles * ith / nth * row_tile);
    const int64_t r1 = std::min(w.rows, n_tiles * (ith + 1) / nth * row_tile);
    if (r0 < r1) rows_fn(r0, r1);
  });
}

}  // namespace

void matmul(thread_pool& pool, const weight_ref& w, const float* x, int64_t n_tokens, float* y) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  if (w.type == dtype::q8_0 || w.type == dtype::q4_0) {
    const int64_t nb = w.cols / qk;
    // Per calling thread, reused across calls: a decode step makes hundreds of these.
    thread_local std::vector<int8_t> qs;
    thread_local std::vector<float> ds;
    thread_local std::vector<int32_t> cs;
    if (qs.size() < static_cast<size_t>(n_tokens * nb * qk)) qs.resize(static_cast<size_t>(n_tokens * nb * qk));
    if (ds.size() < static_cast<size_t>(n_tokens * nb)) {
      ds.resize(static_cast<size_t>(n_tokens * nb));
      cs.resize(static_cast<size_t>(n_tokens * nb));
    }
    int8_t* qp = qs.data();
    float* dp = ds.data();
    int32_t* cp = cs.data();
    // The kernels' weight operand is w + 128 for Q8_0 and the raw nibbles (w + 8) for Q4_0.
    const int32_t offset = w.type == dtype::q8_0 ? 128 : 8;
    if (pool.size() > 1 && n_tokens > 1 && n_tokens * w.cols >= min_parallel_quantize) {
      pool.parallel_for(n_tokens, [&](int64_t t0, int64_t t1) {
        detail::quantize_activations(x, w.cols, t0, t1, qp, dp, cp, offset);
      });
    } else {
      detail::quantize_activations(x, w.cols, 0, n_tokens, qp, dp, cp, offset);
    }
    const detail::q8_activations act{qp, dp, cp, nb};
#if defined(TROUPE_Q_PACKED)
    if (w.packed) {
      split_rows(pool, w, detail::packed_rows, [&](int64_t r0, int64_t r1) { detail::matmul_rows_packed(w, act, n_tokens, r0, r1, y); });
      return;
    }
#endif
    if (w.type == dtype::q8_0) {
      split_rows(pool, w, detail::q_tile_rows, [&](int64_t r0, int64_t r1) { detail::matmul_rows_q8_0(w, act, n_tokens, r0, r1, y); });
    } else {
      split_rows(pool, w, detail::q_tile_rows, [&](int64_t r0, int64_t r1) { detail::matmul_rows_q4_0(w, act, n_tokens, r0, r1, y); });
    }
    return;
  }
  split_rows(pool, w, detail::f_tile_rows, [&](int64_t r0, int64_t r1) { detail::matmul_rows_float(w, x, n_tokens, r0, r1, y); });
}

}  // namespace troupe::cpu
