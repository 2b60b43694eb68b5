#pragma once
// Quantization and dequantization of rows, bit-compatible with GGML's Q8_0 and Q4_0.

#include <cstdint>

#include "kernels/dtype.hpp"

namespace troupe::cpu {

/// x[n] -> n/32 Q8_0 blocks (n a multiple of 32). Same rounding as ggml's reference quantizer.
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n);
/// x[n] -> n/32 Q4_0 blocks (n a multiple of 32). Same rounding as ggml's reference quantizer.
void quantize_row_q4_0(const float* x, block_q4_0* y, int64_t n);
/// Converts n floats to the row format of t (f32, f16, bf16, q8_0, q4_0) at dst (row_bytes(t, n)).
void quantize_row(dtype t, const float* x, void* dst, int64_t n);
/// Row of n elements of type t at src -> n floats.
void dequantize_row(dtype t, const void* src, float* y, int64_t n);

}  // namespace troupe::cpu
