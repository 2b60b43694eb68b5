#include "kernels/cuda/common.cuh"
#include "kernels/cuda/silu_mul.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 256;

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * threads + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

}  // namespace

dev_status silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return {};
  silu_mul_kernel<<<detail::grid_for(n, threads), threads, 0, stream>>>(gate, up, n, out);
  return last_launch();
}

}  // namespace troupe::cuda
