#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kv_write.cuh"

namespace troupe::cuda {
namespace {

__global__ void kv_write_kernel(float* kc, float* vc, int block_size, int64_t width, token_pages tokens,
                                const float* k, const float* v) {
  const int64_t t = blockIdx.x;
  const int32_t p = tokens.pos[t];
  const int64_t block = tokens.block_tables[tokens.table_offset[t] + p / block_size];
  const int64_t slot = block * block_size + p % block_size;
  for (int64_t e = threadIdx.x; e < width; e += blockDim.x) {
    kc[slot * width + e] = k[t * width + e];
    vc[slot * width + e] = v[t * width + e];
  }
}

}  // namespace

dev_status kv_write(const cpu::kv_layer_view& kv, const token_pages& tokens, const float* k, const float* v,
                    cudaStream_t stream) {
  if (tokens.n_tokens <= 0) return {};
  if (kv.block_size <= 0 || kv.n_kv_heads <= 0 || kv.head_dim <= 0) return invalid_argument();
  const int64_t width = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim;
  kv_write_kernel<<<static_cast<unsigned>(tokens.n_tokens), 128, 0, stream>>>(kv.k, kv.v, kv.block_size, width,
                                                                               tokens, k, v);
  return last_launch();
}

}  // namespace troupe::cuda
