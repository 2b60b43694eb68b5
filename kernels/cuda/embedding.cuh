#pragma once
// Embedding gather on the GPU: rows of a weight matrix (any weight type), dequantized to floats.

#include <cstdint>

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// out[i * w.cols ..] = row ids[i] of w, dequantized, for i in [0, n). w.data, ids and out are device
/// pointers; ids must lie in [0, w.rows). Also gathers rows of an f32 activation matrix.
dev_status get_rows(const cpu::weight_ref& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);

}  // namespace troupe::cuda
