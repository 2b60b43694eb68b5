#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"

namespace troupe::cuda {
namespace {

using detail::warp_size;

constexpr int threads = 128;
constexpr int rows_per_block = threads / warp_size;  // one warp per weight row
constexpr int tile = static_cast<int>(gemv_max_tokens);  // tokens a warp accumulates at once

bool is_quantized(dtype t) { return t == dtype::q8_0 || t == dtype::q4_0; }

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

// Eight consecutive elements of a float-type row starting at c, as floats (16-byte loads).
__device__ __forceinline__ void load8(dtype t, const uint8_t* row, int64_t c, float out[8]) {
  if (t == dtype::f32) {
    const float4 a = *reinterpret_cast<const float4*>(row + c * 4);
    const float4 b = *reinterpret_cast<const float4*>(row + c * 4 + 16);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    return;
  }
  const uint4 raw = *reinterpret_cast<const uint4*>(row + c * 2);
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  for (int i = 0; i < 4; ++i) {
    const auto lo = static_cast<uint16_t>(words[i] & 0xffffu), hi = static_cast<uint16_t>(words[i] >> 16);
    out[2 * i] = t == dtype::f16 ? detail::half_to_float(lo) : detail::bf16_to_float(lo);
    out[2 * i + 1] = t == dtype::f16 ? detail::half_to_float(hi) : detail::bf16_to_float(hi);
  }
}

// f32/f16/bf16 weights, float activations: warp per row, tokens in tiles of `tile`. `vec`: rows and
// activations allow 16-byte loads of 8 elements (cols a multiple of 8, aligned bases).
__global__ void gemv_float(dtype t, const uint8_t* w, int64_t rows, int64_t cols, size_t row_bytes, bool vec,
                           const float* x, int64_t n_tokens, float* y) {
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / warp_size;
  if (r >= rows) return;  // the whole warp leaves together
  const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += tile) {
    const int nt = static_cast<int>(min(static_cast<int64_t>(tile), n_tokens - t0));
    const float* xt = x + t0 * cols;
    float acc[tile];
    for (int j = 0; j < tile; ++j) acc[j] = 0.0f;
    if (vec) {
      for (int64_t c = static_cast<int64_t>(lane) * 8; c < cols; c += warp_size * 8) {
        float wv[8];
        load8(t, row, c, wv);
        for (int j = 0; j < tile; ++j) {
          if (j >= nt) break;
          const float4 a = *reinterpret_cast<const float4*>(xt + j * cols + c);
          const float4 b = *reinterpret_cast<const float4*>(xt + j * cols + c + 4);
          acc[j] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y +
                    wv[6] * b.z + wv[7] * b.w;
        }
      }
    } else {
      for (int64_t c = lane; c < cols; c += warp_size) {
        const float wv = detail::load_element(t, row, c);
        for (int j = 0; j < tile; ++j) {
          if (j >= nt) break;
          acc[j] += wv * xt[j * cols + c];
        }
      }
    }
    for (int j = 0; j < tile; ++j) {
      const float s = detail::warp_sum(acc[j]);
      if (lane == 0 && j < nt) y[(t0 + j) * rows + r] = s;
    }
  }
}

// Activations to Q8_0, as the CPU's quantize_row_q8_0: one warp per block of 32, d = amax / 127
// (kept as its fp16 rounding), q = roundf(x / d) computed with the unrounded d. xq holds the int8s,
// xd the scales, both in token-major order.
__global__ void quantize_q8(const float* x, int64_t n_blocks, int8_t* xq, float* xd) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * (threads / warp_size) + threadIdx.x / warp_size;
  if (b >= n_blocks) return;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const float v = x[b * qk + lane];
  const float amax = detail::warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  xq[b * qk + lane] = static_cast<int8_t>(roundf(v * id));
  if (lane == 0) xd[b] = __half2float(__float2half_rn(d));
}

// Q8_0/Q4_0 weights against Q8_0 activations: warp per row; eight lanes share a weight block, each
// taking four of its elements (one dp4a), so a warp covers four blocks per step.
__global__ void gemv_quant(dtype t, const uint8_t* w, int64_t rows, int64_t n_blocks, size_t row_bytes,
                           const int8_t* xq, const float* xd, int64_t n_tokens, float* y) {
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / warp_size;
  if (r >= rows) return;
  const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
  const int quad = lane % 8;     // elements 4 * quad .. 4 * quad + 3 of the block
  const int first = lane / 8;    // the lane's first block
  const bool q8 = t == dtype::q8_0;
  const size_t block_bytes = q8 ? sizeof(block_q8_0) : sizeof(block_q4_0);
  const int64_t cols = n_blocks * qk;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += tile) {
    const int nt = static_cast<int>(min(static_cast<int64_t>(tile), n_tokens - t0));
    float acc[tile];
    for (int j = 0; j < tile; ++j) acc[j] = 0.0f;
    for (int64_t b = first; b < n_blocks; b += 4) {
      const uint8_t* blk = row + static_cast<size_t>(b) * block_bytes;
      const float dw = detail::half_to_float(*reinterpret_cast<const uint16_t*>(blk));
      int wq;
      if (q8) {
        wq = static_cast<int>(detail::load_u32_align2(blk + 2 + 4 * quad));
      } else {
        // Element j < 16 is the low nibble of byte j, element j >= 16 the high nibble of byte j - 16;
        // values are nibble - 8.
        const uint32_t v = detail::load_u32_align2(blk + 2 + 4 * (quad % 4));
        const uint32_t nib = quad < 4 ? (v & 0x0f0f0f0fu) : ((v >> 4) & 0x0f0f0f0fu);
        wq = static_cast<int>(__vsub4(nib, 0x08080808u));
      }
      for (int j = 0; j < tile; ++j) {
        if (j >= nt) break;
        const int64_t tok = t0 + j;
        const int xv = *reinterpret_cast<const int*>(xq + tok * cols + b * qk + 4 * quad);
        acc[j] += static_cast<float>(__dp4a(wq, xv, 0)) * (dw * xd[tok * n_blocks + b]);
      }
    }
    for (int j = 0; j < tile; ++j) {
      const float s = detail::warp_sum(acc[j]);
      if (lane == 0 && j < nt) y[(t0 + j) * rows + r] = s;
    }
  }
}

// Activations rounded to f16 or bf16 for cuBLAS.
__global__ void to_half(const float* x, int64_t n, bool bf16, uint16_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * threads + threadIdx.x;
  if (i >= n) return;
  out[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x[i])) : __half_as_ushort(__float2half_rn(x[i]));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

size_t matmul_scratch_bytes(const cpu::weight_ref& w, int64_t n_tokens) {
  if (n_tokens <= 0) return 0;
  const auto n = static_cast<size_t>(n_tokens * w.cols);
  if (is_quantized(w.type)) return align_up(n) + n / qk * sizeof(float);
  if (w.type == dtype::f32 || n_tokens <= gemv_max_tokens) return 0;
  return n * 2;
}

dev_status matmul(const matmul_context& ctx, const cpu::weight_ref& w, const float* x, int64_t n_tokens, float* y,
                  cudaStream_t stream) {
  if (n_tokens <= 0 || w.rows <= 0) return {};
  if (w.cols <= 0 || w.cols % block_elems(w.type) != 0) return invalid_argument();
  if (ctx.scratch_bytes < matmul_scratch_bytes(w, n_tokens)) return invalid_argument();
  const auto* wd = static_cast<const uint8_t*>(w.data);
  const size_t rb = row_bytes(w.type, w.cols);
  const unsigned grid = detail::grid_for(w.rows, rows_per_block);

  if (is_quantized(w.type)) {
    const int64_t n_blocks = w.cols / qk;
    auto* xq = static_cast<int8_t*>(ctx.scratch);
    auto* xd = reinterpret_cast<float*>(static_cast<uint8_t*>(ctx.scratch) + align_up(static_cast<size_t>(n_tokens * w.cols)));
    const int64_t act_blocks = n_tokens * n_blocks;
    quantize_q8<<<detail::grid_for(act_blocks, threads / warp_size), threads, 0, stream>>>(x, act_blocks, xq, xd);
    TROUPE_CUDA_TRY(cudaGetLastError());
    gemv_quant<<<grid, threads, 0, stream>>>(w.type, wd, w.rows, n_blocks, rb, xq, xd, n_tokens, y);
    return last_launch();
  }

  if (n_tokens <= gemv_max_tokens) {
    const bool vec = w.cols % 8 == 0 && aligned16(wd) && aligned16(x);
    gemv_float<<<grid, threads, 0, stream>>>(w.type, wd, w.rows, w.cols, rb, vec, x, n_tokens, y);
    return last_launch();
  }

  // Row-major W (rows x cols) is column-major cols x rows, X (n x cols) column-major cols x n, and Y
  // (n x rows) column-major rows x n: Y = W^T X in cuBLAS's terms.
  const float one = 1.0f, zero = 0.0f;
  const void* b = x;
  cudaDataType_t type = CUDA_R_32F;
  if (w.type != dtype::f32) {
    const bool bf16 = w.type == dtype::bf16;
    type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const int64_t n = n_tokens * w.cols;
    to_half<<<detail::grid_for(n, threads), threads, 0, stream>>>(x, n, bf16, static_cast<uint16_t*>(ctx.scratch));
    TROUPE_CUDA_TRY(cudaGetLastError());
    b = ctx.scratch;
  }
  const cublas_api* blas = cublas();
  if (!blas) return check(CUBLAS_STATUS_NOT_INITIALIZED);
  TROUPE_CUDA_TRY(blas->set_stream(ctx.blas, stream));
  TROUPE_CUDA_TRY(blas->gemm_ex(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows), static_cast<int>(n_tokens),
                               static_cast<int>(w.cols), &one, wd, type, static_cast<int>(w.cols), b, type,
                               static_cast<int>(w.cols), &zero, y, CUDA_R_32F, static_cast<int>(w.rows),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return {};
}

}  // namespace troupe::cuda
