#pragma once
// Helpers shared by the CPU kernel tests: random data and weights of every dtype.

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/quant.hpp"

namespace troupe::cpu::test {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

/// A weight matrix of type t made from random floats; owns its bytes.
struct test_weight {
  std::vector<uint8_t> bytes;
  weight_ref ref;

  packed_weight packed;

  /// pack: also give the kernel pack_weight's layout (when the type and build have one).
  test_weight(dtype t, int64_t rows, int64_t cols, uint32_t seed, bool pack = false) {
    const size_t rb = row_bytes(t, cols);
    bytes.resize(rb * static_cast<size_t>(rows));
    const auto f = random_floats(static_cast<size_t>(rows * cols), seed);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, f.data() + r * cols, bytes.data() + r * rb, cols);
    ref = weight_ref{t, rows, cols, bytes.data()};
    if (pack) {
      packed = pack_weight(ref);
      ref.packed = packed.data.get();
    }
  }
};

/// The ways the fast matmul can see a weight of type t: as stored, and repacked where it can be.
inline std::vector<bool> pack_variants(dtype t) {
  const test_weight probe(t, 1, 32, 0, true);
  return probe.ref.packed ? std::vector<bool>{false, true} : std::vector<bool>{false};
}

inline const dtype all_types[] = {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0};

inline bool is_quantized(dtype t) { return t == dtype::q8_0 || t == dtype::q4_0; }

}  // namespace troupe::cpu::test
