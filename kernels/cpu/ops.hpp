#pragma once
// The CPU op interface. Each op has a plain reference version in troupe::cpu::ref (obviously right,
// single-threaded, used by tests as the oracle) and a fast version in troupe::cpu (SIMD where the
// compiler targets it, multi-threaded through the pool). Fast and reference agree to float rounding.

#include <cstdint>
#include <memory>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/huge_buffer.hpp"
#include "kernels/dtype.hpp"

namespace troupe::cpu {

/// A weight matrix: `rows` rows of `cols` elements, row-major; a row is row_bytes(type, cols) bytes.
/// A linear layer with out features O and in features I is rows = O, cols = I.
struct weight_ref {
  dtype type = dtype::f32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  /// Optional copy of data in the fast kernel's preferred layout (pack_weight); matmul uses it when
  /// set. data must still point at the original rows (get_row and the reference read them).
  const void* packed = nullptr;
};

/// A weight copied into the layout a fast kernel prefers. Today: Q8_0 and Q4_0 on CPUs with
/// AVX-512 VNNI, where the blocks of 8 rows are interleaved in 4-byte groups so that one
/// dot-product instruction multiplies 8 rows by 4 activations and a block ends in one vector of 8
/// row sums, instead of 8 vectors to convert, scale and reduce. Same bytes as the original, in
/// huge-page memory (huge_buffer). data is empty when the type or the build has no such layout;
/// otherwise set weight_ref::packed = data.get() and keep this alive while the weight_ref is used.
struct packed_weight {
  huge_buffer data;
};
packed_weight pack_weight(const weight_ref& w);

/// How RoPE pairs the dimensions of a head: GGUF/llama2.c rotate adjacent pairs (2i, 2i+1);
/// Hugging Face checkpoints (and GGUF qwen2) rotate halves (i, i + head_dim/2).
enum class rope_style { interleaved, neox };

/// One layer's slice of the paged KV pool. Element (block b, slot s, kv head h, dim d) of K lives at
/// k[((b * block_size + s) * n_kv_heads + h) * head_dim + d]; V likewise.
struct kv_layer_view {
  float* k = nullptr;
  float* v = nullptr;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

/// One query token for paged attention: it attends to positions [0, n_ctx) of its sequence, whose
/// blocks are block_table[0 .. ceil(n_ctx / block_size)).
struct attn_query {
  const float* q = nullptr;           ///< n_heads * head_dim
  float* out = nullptr;               ///< n_heads * head_dim
  const int32_t* block_table = nullptr;
  int32_t n_ctx = 0;
};

// ---- fast versions ----

/// y[t * w.rows + r] = dot(row r of w, x[t * w.cols ..]) for t in [0, n_tokens).
/// For several tokens each weight block is reused across tokens (matrix-matrix), not re-read.
void matmul(thread_pool& pool, const weight_ref& w, const float* x, int64_t n_tokens, float* y);
/// Row r of w (an embedding row), dequantized to out[w.cols].
void get_row(const weight_ref& w, int64_t r, float* out);
/// y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], per row of dim; y may alias x.
void rms_norm(thread_pool& pool, const float* x, const float* weight, int64_t n_rows, int64_t dim,
              float eps, float* y);
/// Rotates n_heads heads (head_dim each, contiguous) of one token at position pos in place.
/// inv_freq has head_dim / 2 entries (theta_i, scaling already applied).
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          rope_style style);
/// out[i] = silu(gate[i]) * up[i]; out may alias gate.
void silu_mul(thread_pool& pool, const float* gate, const float* up, int64_t n, float* out);
/// x[i] += y[i]
void add_inplace(thread_pool& pool, float* x, const float* y, int64_t n);
/// Writes one token's K and V (n_kv_heads * head_dim each) into slot `pos` of its sequence.
void kv_write(const kv_layer_view& kv, const int32_t* block_table, int64_t pos, const float* k,
              const float* v);
/// Scaled dot-product attention with grouped-query heads (n_heads a multiple of kv.n_kv_heads)
/// for each query, reading keys and values through its block table. Parallel over queries x heads.
void paged_attention(thread_pool& pool, const kv_layer_view& kv, const attn_query* queries,
                     int64_t n_queries, int n_heads, float scale);

// ---- reference versions: single-threaded, plain loops ----
namespace ref {
void matmul(const weight_ref& w, const float* x, int64_t n_tokens, float* y);
void get_row(const weight_ref& w, int64_t r, float* out);
void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* y);
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          rope_style style);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void paged_attention(const kv_layer_view& kv, const attn_query* queries, int64_t n_queries,
                     int n_heads, float scale);
/// Attention over contiguous K/V (keys[pos][n_kv_heads][head_dim]): the oracle for paged attention.
void contiguous_attention(const float* q, const float* keys, const float* values, int64_t n_ctx,
                          int n_heads, int n_kv_heads, int head_dim, float scale, float* out);
}  // namespace ref

}  // namespace troupe::cpu
