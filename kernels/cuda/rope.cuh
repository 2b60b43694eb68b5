#pragma once
// RoPE on the GPU, in both pairings (interleaved pairs and neox rotate-half).

#include <cstdint>

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// Rotates in place the n_heads heads (head_dim each, contiguous) of each of n_tokens tokens; token t's
/// row starts at x + t * n_heads * head_dim and sits at position pos[t]. inv_freq has head_dim / 2
/// entries. x, pos and inv_freq are device pointers.
dev_status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* pos,
                const float* inv_freq, cpu::rope_style style, cudaStream_t stream);

}  // namespace troupe::cuda
