#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.cuh"

namespace troupe::cuda {
namespace {

__global__ void get_rows_kernel(dtype t, const uint8_t* w, size_t row_bytes, int64_t cols, const int32_t* ids,
                                float* out) {
  const int64_t i = blockIdx.x;
  const uint8_t* row = w + static_cast<size_t>(ids[i]) * row_bytes;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[i * cols + c] = detail::load_element(t, row, c);
}

}  // namespace

dev_status get_rows(const cpu::weight_ref& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return {};
  if (w.cols <= 0 || w.cols % block_elems(w.type) != 0) return invalid_argument();
  get_rows_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(w.type, static_cast<const uint8_t*>(w.data),
                                                                 row_bytes(w.type, w.cols), w.cols, ids, out);
  return last_launch();
}

}  // namespace troupe::cuda
