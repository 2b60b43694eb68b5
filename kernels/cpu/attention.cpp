// Paged attention: each work item is one query x a run of its heads; a key or value row read
// through the block table serves every head of the item (all heads of a GQA group share it).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/simd.hpp"

namespace troupe::cpu {
namespace {

float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0.0f;
#if defined(__AVX2__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
  s = simd::hsum(_mm256_add_ps(a0, a1));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// acc[i] += w * v[i]
void axpy(float* acc, float w, const float* v, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 wv = _mm256_set1_ps(w);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(acc + i)));
#endif
  for (; i < n; ++i) acc[i] += w * v[i];
}

/// s[i] = exp(s[i] - max), returns the sum.
float softmax_numerators(float* s, int64_t n, float max) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX2__)
  const __m256 mv = _mm256_set1_ps(max);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 e = simd::exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = simd::hsum(acc);
#endif
  for (; i < n; ++i) sum += (s[i] = std::exp(s[i] - max));
  return sum;
}

// A run of consecutive query heads of one query. Their KV heads are consecutive too, so for every
// position the item reads one contiguous slice of the K (and V) row, and heads of a GQA group share
// the slice they have in common from L1.
struct work_item {
  int64_t query;
  int head_begin;
  int n_heads;
};

void attend(const kv_layer_view& kv, const attn_query& qr, const work_item& it, int group, float scale,
            std::vector<float>& scores, std::vector<float>& acc) {
  const int64_t n_ctx = qr.n_ctx;
  const int hd = kv.head_dim;
  const int64_t width = static_cast<int64_t>(kv.n_kv_heads) * hd;
  const int nh = it.n_heads;
  if (n_ctx <= 0) {
    std::fill_n(qr.out + static_cast<int64_t>(it.head_begin) * hd, static_cast<int64_t>(nh) * hd, 0.0f);
    return;
  }
  scores.resize(static_cast<size_t>(nh * n_ctx));
  acc.assign(static_cast<size_t>(nh * hd), 0.0f);
  const float* q = qr.q + static_cast<int64_t>(it.head_begin) * hd;
  // Offset of each head's KV head within a K/V row.
  int64_t kv_off[64];
  std::vector<int64_t> kv_off_big;
  int64_t* off = kv_off;
  if (nh > 64) {
    kv_off_big.resize(static_cast<size_t>(nh));
    off = kv_off_big.data();
  }
  for (int j = 0; j < nh; ++j) off[j] = static_cast<int64_t>((it.head_begin + j) / group) * hd;

  // Scores, walking the sequence block by block through its table.
  for (int64_t p0 = 0; p0 < n_ctx; p0 += kv.block_size) {
    const int64_t base = static_cast<int64_t>(qr.block_table[p0 / kv.block_size]) * kv.block_size;
    const int64_t n = std::min<int64_t>(kv.block_size, n_ctx - p0);
    for (int64_t s = 0; s < n; ++s) {
      const float* k = kv.k + (base + s) * width;
      for (int j = 0; j < nh; ++j) scores[j * n_ctx + p0 + s] = dot(q + j * hd, k + off[j], hd) * scale;
    }
  }
  std::vector<float> inv_sum(static_cast<size_t>(nh));
  for (int j = 0; j < nh; ++j) {
    float* sj = scores.data() + j * n_ctx;
    const float max = *std::max_element(sj, sj + n_ctx);
    inv_sum[j] = 1.0f / softmax_numerators(sj, n_ctx, max);
  }
  // Weighted sum of V rows, per head and per 64 dimensions, so the running sums stay in registers.
  for (int j = 0; j < nh; ++j) {
    const float* sj = scores.data() + j * n_ctx;
    int d0 = 0;
#if defined(__AVX2__)
    for (; d0 + 64 <= hd; d0 += 64) {
      __m256 a[8];
      for (int u = 0; u < 8; ++u) a[u] = _mm256_setzero_ps();
      for (int64_t p0 = 0; p0 < n_ctx; p0 += kv.block_size) {
        const int64_t base = static_cast<int64_t>(qr.block_table[p0 / kv.block_size]) * kv.block_size;
        const int64_t n = std::min<int64_t>(kv.block_size, n_ctx - p0);
        for (int64_t s = 0; s < n; ++s) {
          const float* v = kv.v + (base + s) * width + off[j] + d0;
          const __m256 wv = _mm256_set1_ps(sj[p0 + s]);
          for (int u = 0; u < 8; ++u) a[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + 8 * u), a[u]);
        }
      }
      for (int u = 0; u < 8; ++u) _mm256_storeu_ps(acc.data() + j * hd + d0 + 8 * u, a[u]);
    }
#endif
    if (d0 < hd) {
      for (int64_t p0 = 0; p0 < n_ctx; p0 += kv.block_size) {
        const int64_t base = static_cast<int64_t>(qr.block_table[p0 / kv.block_size]) * kv.block_size;
        const int64_t n = std::min<int64_t>(kv.block_size, n_ctx - p0);
        for (int64_t s = 0; s < n; ++s)
          axpy(acc.data() + j * hd + d0, sj[p0 + s], kv.v + (base + s) * width + off[j] + d0, hd - d0);
      }
    }
  }
  for (int j = 0; j < nh; ++j) {
    float* out = qr.out + static_cast<int64_t>(it.head_begin + j) * hd;
    for (int d = 0; d < hd; ++d) out[d] = acc[j * hd + d] * inv_sum[j];
  }
}

}  // namespace

void paged_attention(thread_pool& pool, const kv_layer_view& kv, const attn_query* queries,
                     int64_t n_queries, int n_heads, float scale) {
  if (n_queries <= 0) return;
  const int group = n_heads / kv.n_kv_heads;
  // All heads of a query in one item reads whole K/V rows; split the heads (along KV-head
  // boundaries while possible) only as far as needed to give every thread work.
  int splits = 1;
  while (n_queries * splits < 2 * pool.size() && splits < n_heads) splits *= 2;
  splits = std::min(splits, n_heads);
  std::vector<work_item> items;
  items.reserve(static_cast<size_t>(n_queries * splits));
  for (int64_t i = 0; i < n_queries; ++i) {
    for (int s = 0; s < splits; ++s) {
      const int b = n_heads * s / splits, e = n_heads * (s + 1) / splits;
      if (b < e) items.push_back({i, b, e - b});
    }
  }
  // Items differ in length (queries have different n_ctx), so threads take them one at a time.
  std::atomic<size_t> next{0};
  auto worker = [&](int, int) {
    thread_local std::vector<float> scores, acc;
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items.size();)
      attend(kv, queries[items[i].query], items[i], group, scale, scores, acc);
  };
  int64_t total_ctx = 0;
  for (int64_t i = 0; i < n_queries; ++i) total_ctx += queries[i].n_ctx;
  if (pool.size() == 1 || items.size() < 2 || total_ctx * n_heads * kv.head_dim < 16 * 1024) {
    worker(0, 1);
  } else {
    pool.run(worker);
  }
}

}  // namespace troupe::cpu
