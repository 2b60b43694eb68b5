#pragma once
// Residual and bias additions on the GPU.

#include <cstdint>

#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// x[i] += y[i] for i in [0, n). Device pointers.
dev_status add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);
/// x[r * dim + j] += bias[j] for every row r in [0, n_rows) (projection biases). Device pointers.
dev_status add_bias(float* x, const float* bias, int64_t n_rows, int64_t dim, cudaStream_t stream);

}  // namespace troupe::cuda
