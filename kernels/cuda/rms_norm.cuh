#pragma once
// RMSNorm on the GPU.

#include <cstdint>

#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], per row of dim; y may alias x. Device pointers.
dev_status rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* y,
                    cudaStream_t stream);

}  // namespace troupe::cuda
