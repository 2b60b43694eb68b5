#include "kernels/cpu/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace troupe::cpu {

void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / qk; ++b) {
    const float* xb = x + b * qk;
    float amax = 0.0f;
    for (int j = 0; j < qk; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < qk; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(xb[j] * id));
  }
}

void quantize_row_q4_0(const float* x, block_q4_0* y, int64_t n) {
  for (int64_t b = 0; b < n / qk; ++b) {
    const float* xb = x + b * qk;
    // The scale maps the element of largest magnitude, with its sign, to -8.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < qk; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < qk / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + qk / 2] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row(dtype t, const float* x, void* dst, int64_t n) {
  switch (t) {
    case dtype::f32:
      std::memcpy(dst, x, static_cast<size_t>(n) * 4);
      return;
    case dtype::f16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
      return;
    }
    case dtype::bf16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(x[i]);
      return;
    }
    case dtype::q8_0:
      quantize_row_q8_0(x, static_cast<block_q8_0*>(dst), n);
      return;
    case dtype::q4_0:
      quantize_row_q4_0(x, static_cast<block_q4_0*>(dst), n);
      return;
  }
}

void dequantize_row(dtype t, const void* src, float* y, int64_t n) {
  switch (t) {
    case dtype::f32:
      std::memcpy(y, src, static_cast<size_t>(n) * 4);
      return;
    case dtype::f16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
      return;
    }
    case dtype::bf16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
      return;
    }
    case dtype::q8_0: {
      const auto* b = static_cast<const block_q8_0*>(src);
      for (int64_t i = 0; i < n / qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < qk; ++j) y[i * qk + j] = static_cast<float>(b[i].qs[j]) * d;
      }
      return;
    }
    case dtype::q4_0: {
      const auto* b = static_cast<const block_q4_0*>(src);
      for (int64_t i = 0; i < n / qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < qk / 2; ++j) {
          y[i * qk + j] = static_cast<float>((b[i].qs[j] & 0x0f) - 8) * d;
          y[i * qk + j + qk / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
  }
}

}  // namespace troupe::cpu
