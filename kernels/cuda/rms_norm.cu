#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rms_norm.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 256;

// One block per row: the sum of squares is reduced over the block, then every thread scales the
// elements it read.
__global__ void rms_norm_kernel(const float* x, const float* weight, int64_t dim, float eps, float* y) {
  __shared__ float warp_sums[threads / detail::warp_size];
  const float* xr = x + blockIdx.x * dim;
  float* yr = y + blockIdx.x * dim;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += threads) ss += xr[j] * xr[j];
  ss = detail::warp_sum(ss);
  if (threadIdx.x % detail::warp_size == 0) warp_sums[threadIdx.x / detail::warp_size] = ss;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < threads / detail::warp_size; ++w) total += warp_sums[w];
  const float scale = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += threads) yr[j] = xr[j] * scale * weight[j];
}

}  // namespace

dev_status rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* y,
                    cudaStream_t stream) {
  if (n_rows <= 0) return {};
  if (dim <= 0) return invalid_argument();
  rms_norm_kernel<<<static_cast<unsigned>(n_rows), threads, 0, stream>>>(x, weight, dim, eps, y);
  return last_launch();
}

}  // namespace troupe::cuda
