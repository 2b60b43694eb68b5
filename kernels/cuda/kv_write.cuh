#pragma once
// KV-page writes on the GPU: each token's K and V rows into its slot of the paged cache.

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/token_pages.hpp"

namespace troupe::cuda {

/// Writes row t of k and of v (kv.n_kv_heads * kv.head_dim floats each) into the slot of token t's
/// position, for every token of the batch. kv's pointers, k and v are device pointers.
dev_status kv_write(const cpu::kv_layer_view& kv, const token_pages& tokens, const float* k, const float* v,
                    cudaStream_t stream);

}  // namespace troupe::cuda
