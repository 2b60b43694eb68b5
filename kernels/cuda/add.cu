#include "kernels/cuda/add.cuh"
#include "kernels/cuda/common.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 256;

// y's index is i % period: the whole of y for a residual add (period n), a bias row otherwise.
__global__ void add_kernel(float* x, const float* y, int64_t n, int64_t period) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * threads + threadIdx.x;
  if (i < n) x[i] += y[i % period];
}

}  // namespace

dev_status add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return {};
  add_kernel<<<detail::grid_for(n, threads), threads, 0, stream>>>(x, y, n, n);
  return last_launch();
}

dev_status add_bias(float* x, const float* bias, int64_t n_rows, int64_t dim, cudaStream_t stream) {
  if (n_rows <= 0) return {};
  if (dim <= 0) return invalid_argument();
  const int64_t n = n_rows * dim;
  add_kernel<<<detail::grid_for(n, threads), threads, 0, stream>>>(x, bias, n, dim);
  return last_launch();
}

}  // namespace troupe::cuda
