#pragma once
// The SwiGLU gate on the GPU.

#include <cstdint>

#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// out[i] = silu(gate[i]) * up[i]; out may alias gate. Device pointers.
dev_status silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);

}  // namespace troupe::cuda
