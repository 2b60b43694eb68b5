// Reference versions of the CPU ops: plain loops, single-threaded, double accumulation where it is
// cheap to be exact. They are the oracle every fast version is tested against.
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/quant.hpp"

namespace troupe::cpu::ref {

void get_row(const weight_ref& w, int64_t r, float* out) {
  const auto* row = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * row_bytes(w.type, w.cols);
  dequantize_row(w.type, row, out, w.cols);
}

void matmul(const weight_ref& w, const float* x, int64_t n_tokens, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    ref::get_row(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.cols;
      double acc = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) acc += static_cast<double>(row[c]) * xt[c];
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
}

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* y) {
  for (int64_t i = 0; i < n_rows; ++i) {
    const float* xr = x + i * dim;
    float* yr = y + i * dim;
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * scale * weight[j];
  }
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          rope_style style) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      const float c = std::cos(angle), s = std::sin(angle);
      const int64_t a = style == rope_style::interleaved ? 2 * i : i;
      const int64_t b = style == rope_style::interleaved ? 2 * i + 1 : i + half;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void contiguous_attention(const float* q, const float* keys, const float* values, int64_t n_ctx,
                          int n_heads, int n_kv_heads, int head_dim, float scale, float* out) {
  const int group = n_heads / n_kv_heads;
  std::vector<double> scores(static_cast<size_t>(n_ctx));
  for (int h = 0; h < n_heads; ++h) {
    const int kvh = h / group;
    const float* qh = q + h * head_dim;
    double max_score = -INFINITY;
    for (int64_t p = 0; p < n_ctx; ++p) {
      const float* k = keys + (p * n_kv_heads + kvh) * head_dim;
      double s = 0.0;
      for (int d = 0; d < head_dim; ++d) s += static_cast<double>(qh[d]) * k[d];
      scores[p] = s * scale;
      max_score = std::max(max_score, scores[p]);
    }
    double sum = 0.0;
    for (int64_t p = 0; p < n_ctx; ++p) sum += (scores[p] = std::exp(scores[p] - max_score));
    for (int d = 0; d < head_dim; ++d) {
      double acc = 0.0;
      for (int64_t p = 0; p < n_ctx; ++p) acc += scores[p] * values[(p * n_kv_heads + kvh) * head_dim + d];
      out[h * head_dim + d] = static_cast<float>(acc / sum);
    }
  }
}

void paged_attention(const kv_layer_view& kv, const attn_query* queries, int64_t n_queries,
                     int n_heads, float scale) {
  const int64_t width = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim;
  for (int64_t i = 0; i < n_queries; ++i) {
    const attn_query& qr = queries[i];
    // Gather the sequence's keys and values into contiguous buffers, then attend.
    std::vector<float> keys(static_cast<size_t>(qr.n_ctx * width)), values(keys.size());
    for (int64_t p = 0; p < qr.n_ctx; ++p) {
      const int64_t block = qr.block_table[p / kv.block_size];
      const int64_t slot = block * kv.block_size + p % kv.block_size;
      for (int64_t e = 0; e < width; ++e) {
        keys[p * width + e] = kv.k[slot * width + e];
        values[p * width + e] = kv.v[slot * width + e];
      }
    }
    contiguous_attention(qr.q, keys.data(), values.data(), qr.n_ctx, n_heads, kv.n_kv_heads,
                         kv.head_dim, scale, qr.out);
  }
}

}  // namespace troupe::cpu::ref
