#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 256;

// One thread per rotated pair (token, head, i < head_dim / 2).
__global__ void rope_kernel(float* x, int64_t n_pairs, int64_t n_heads, int64_t head_dim, const int32_t* pos,
                            const float* inv_freq, bool interleaved) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * threads + threadIdx.x;
  if (idx >= n_pairs) return;
  const int64_t half = head_dim / 2;
  const int64_t i = idx % half;
  const int64_t head = idx / half;  // token * n_heads + head within the token
  const int64_t token = head / n_heads;
  float* xh = x + head * head_dim;
  const float angle = static_cast<float>(pos[token]) * inv_freq[i];
  float s, c;
  sincosf(angle, &s, &c);
  const int64_t a = interleaved ? 2 * i : i;
  const int64_t b = interleaved ? 2 * i + 1 : i + half;
  const float x0 = xh[a], x1 = xh[b];
  xh[a] = x0 * c - x1 * s;
  xh[b] = x0 * s + x1 * c;
}

}  // namespace

dev_status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* pos,
                const float* inv_freq, cpu::rope_style style, cudaStream_t stream) {
  if (n_tokens <= 0 || n_heads <= 0) return {};
  if (head_dim <= 0 || head_dim % 2 != 0) return invalid_argument();
  const int64_t n_pairs = n_tokens * n_heads * (head_dim / 2);
  rope_kernel<<<detail::grid_for(n_pairs, threads), threads, 0, stream>>>(
      x, n_pairs, n_heads, head_dim, pos, inv_freq, style == cpu::rope_style::interleaved);
  return last_launch();
}

}  // namespace troupe::cuda
