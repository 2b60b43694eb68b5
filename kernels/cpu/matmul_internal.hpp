#pragma once
// Internal pieces of the fast matmul shared by its per-dtype files (not part of the op interface).
//
// Determinism: y[t][r] must not depend on n_tokens, on where t sits in the batch, or on the thread
// count. Every kernel therefore gives each (row, token) pair its own accumulator that walks the
// columns in the same order whatever the tile shape, and rows (never columns) are split across
// threads. Tiles of several rows x several tokens only share the loads of weights and activations.

#include <cstdint>

#include "kernels/cpu/ops.hpp"

namespace troupe::cpu::detail {

/// Activations quantized to Q8_0 blocks, split into values and scales so the kernels load 32 bytes
/// of values with one instruction.
struct q8_activations {
  const int8_t* qs = nullptr;    ///< n_tokens * nb * 32
  const float* d = nullptr;      ///< n_tokens * nb, the fp16-rounded block scales as float
  const int32_t* corr = nullptr; ///< n_tokens * nb: -offset * sum of the block's values (VNNI path)
  int64_t nb = 0;                ///< blocks per token
};

/// Quantizes token rows [t0, t1) of x (cols each) into the buffers (same rounding as
/// quantize_row_q8_0, so the fast path sees exactly ggml's activations); corr[i] gets
/// -corr_offset * (sum of block i's values).
void quantize_activations(const float* x, int64_t cols, int64_t t0, int64_t t1, int8_t* qs, float* d,
                          int32_t* corr, int32_t corr_offset);

/// y[t * rows + r] for r in [r0, r1), t in [0, n_tokens), per weight type.
void matmul_rows_q8_0(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0,
                      int64_t r1, float* y);
void matmul_rows_q4_0(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0,
                      int64_t r1, float* y);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define TROUPE_Q_PACKED 1
/// Rows per packed group (the lanes of one 256-bit vector of int32 sums).
inline constexpr int64_t packed_rows = 8;
/// Q8_0 or Q4_0 weights in pack_weight's layout (w.packed): y[t * rows + r] for r in [r0, r1) (r0 a
/// multiple of packed_rows), t in [0, n_tokens).
void matmul_rows_packed(const weight_ref& w, const q8_activations& x, int64_t n_tokens, int64_t r0,
                        int64_t r1, float* y);
#endif
void matmul_rows_float(const weight_ref& w, const float* x, int64_t n_tokens, int64_t r0, int64_t r1,
                       float* y);

// Register tiles (rows x tokens), measured on Zen 4 (see kernels/bench): with 32 vector registers
// (AVX-512) 6x4 for the float kernels and 4x6 for the integer ones; with 16 (AVX2) smaller tiles
// that still fit. Only used inside the kernel library, which is compiled with one set of flags.
#if defined(__AVX512F__)
inline constexpr int f_accs = 2;  // accumulators per (row, token) in the float kernels
inline constexpr int f_tile_rows = 6, f_tile_tokens = 2;
inline constexpr int q_tile_rows = 4, q_tile_tokens = 6;
#else
inline constexpr int f_accs = 2;
inline constexpr int f_tile_rows = 2, f_tile_tokens = 3;
inline constexpr int q_tile_rows = 2, q_tile_tokens = 4;
#endif

/// Tokens per chunk: a chunk's activations stay in L2 while every row tile of a thread passes over
/// them, and the weights are streamed from memory once per chunk.
inline constexpr int64_t token_chunk = 64;

}  // namespace troupe::cpu::detail
