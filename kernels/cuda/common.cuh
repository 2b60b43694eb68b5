#pragma once
// Device helpers shared by the CUDA kernels; for .cu files only (the .cuh launch headers are plain
// C++ that g++ compiles too).
#ifndef __CUDACC__
#error "kernels/cuda/common.cuh is included from .cu files only"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/dtype.hpp"

namespace troupe::cuda::detail {

constexpr int warp_size = 32;
constexpr unsigned full_mask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = warp_size / 2; o > 0; o >>= 1) v += __shfl_xor_sync(full_mask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = warp_size / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(full_mask, v, o));
  return v;
}

__device__ __forceinline__ float half_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_to_float(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

/// Four bytes at an address that is only 2-byte aligned (Q8_0 and Q4_0 blocks are 34 and 18 bytes).
__device__ __forceinline__ uint32_t load_u32_align2(const uint8_t* p) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
}

/// Element c of a row of type t (f32, f16, bf16, q8_0, q4_0), dequantized as the CPU does.
__device__ __forceinline__ float load_element(dtype t, const uint8_t* row, int64_t c) {
  switch (t) {
    case dtype::f32: return reinterpret_cast<const float*>(row)[c];
    case dtype::f16: return half_to_float(reinterpret_cast<const uint16_t*>(row)[c]);
    case dtype::bf16: return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[c]);
    case dtype::q8_0: {
      const uint8_t* b = row + (c / qk) * sizeof(block_q8_0);
      const auto q = static_cast<int8_t>(b[2 + c % qk]);
      return static_cast<float>(q) * half_to_float(*reinterpret_cast<const uint16_t*>(b));
    }
    case dtype::q4_0: {
      const uint8_t* b = row + (c / qk) * sizeof(block_q4_0);
      const int j = static_cast<int>(c % qk);
      const uint8_t byte = b[2 + j % (qk / 2)];
      const int q = j < qk / 2 ? (byte & 15) : (byte >> 4);
      return static_cast<float>(q - 8) * half_to_float(*reinterpret_cast<const uint16_t*>(b));
    }
  }
  return 0.0f;
}

/// Grid size for n items at `per_block` items per block.
inline unsigned grid_for(int64_t n, int64_t per_block) { return static_cast<unsigned>((n + per_block - 1) / per_block); }

}  // namespace troupe::cuda::detail
