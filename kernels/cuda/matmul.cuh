#pragma once
// Matrix products on the GPU: y = x W^T for a weight matrix of any type.
//
// Up to gemv_max_tokens tokens (decode steps) a warp-per-row kernel reads each weight row once for
// all tokens and multiplies float activations, accumulating in fp32. Quantized weights (Q8_0, Q4_0, in
// GGUF's block layout) take the activations rounded to Q8_0 blocks first, exactly as the CPU kernels
// do, and run integer dot products per block; they stay on that kernel for any token count. More
// tokens with f32, f16 or bf16 weights go to cuBLAS: f32 as is (no TF32), f16/bf16 with the
// activations rounded to the weight's type and fp32 accumulation.

#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

inline constexpr int64_t gemv_max_tokens = 8;

/// What matmul works with besides its operands: a cuBLAS handle (from cublas()->create) and device
/// scratch, one per stream.
struct matmul_context {
  cublasHandle_t blas = nullptr;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
};

/// Scratch bytes matmul needs for w and n_tokens (0 when it needs none).
size_t matmul_scratch_bytes(const cpu::weight_ref& w, int64_t n_tokens);

/// y[t * w.rows + r] = dot(row r of w, x[t * w.cols ..]) for t in [0, n_tokens). w.data, x and y are
/// device pointers; ctx.scratch must hold matmul_scratch_bytes(w, n_tokens).
dev_status matmul(const matmul_context& ctx, const cpu::weight_ref& w, const float* x, int64_t n_tokens, float* y,
                  cudaStream_t stream);

}  // namespace troupe::cuda
