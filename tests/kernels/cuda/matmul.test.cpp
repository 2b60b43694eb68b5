// The GPU matmul against ref::matmul for every weight type, on both sides of gemv_max_tokens (the
// gemv kernel, and cuBLAS for float weights), with the activations each path actually multiplies.
#include <cublas_v2.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/quant.hpp"
#include "kernels/cuda/matmul.cuh"
#include "tests/kernels/cpu/test_util.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe::cuda {
namespace {

using cpu::test::is_quantized;
using cpu::test::random_floats;
using test::device_vector;

/// The activations a path multiplies: Q8_0-rounded for quantized weights (as the CPU), rounded to
/// the weight's type where cuBLAS runs an f16/bf16 product, as they are otherwise.
std::vector<float> effective_activations(dtype t, const std::vector<float>& x, int64_t cols, int64_t n_tokens) {
  std::vector<float> out(x.size());
  if (is_quantized(t)) {
    std::vector<block_q8_0> blocks(static_cast<size_t>(cols / qk));
    for (size_t off = 0; off < x.size(); off += static_cast<size_t>(cols)) {
      cpu::quantize_row_q8_0(x.data() + off, blocks.data(), cols);
      cpu::dequantize_row(dtype::q8_0, blocks.data(), out.data() + off, cols);
    }
    return out;
  }
  if (t == dtype::f32 || n_tokens <= gemv_max_tokens) return x;
  std::vector<uint16_t> h(x.size());
  cpu::quantize_row(t, x.data(), h.data(), static_cast<int64_t>(x.size()));
  cpu::dequantize_row(t, h.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

/// The fp32 sums run in lanes and trees (gemv) or tiles (cuBLAS); the error stays below
/// (cols / 4 + 64) * 2^-24 * sum_c |w_c x_c| against the double-precision reference.
void expect_close(const cpu::weight_ref& w, const std::vector<float>& x_eff, int64_t n_tokens, const std::vector<float>& y) {
  std::vector<float> y_ref(y.size());
  cpu::ref::matmul(w, x_eff.data(), n_tokens, y_ref.data());
  std::vector<float> row(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows; ++r) {
    cpu::ref::get_row(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double mag = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) mag += std::fabs(static_cast<double>(row[c]) * x_eff[t * w.cols + c]);
      const double tol = (static_cast<double>(w.cols) / 4 + 64) * std::ldexp(1.0, -24) * mag + 1e-30;
      const size_t i = static_cast<size_t>(t * w.rows + r);
      if (std::fabs(static_cast<double>(y[i]) - y_ref[i]) > tol && ++failures < 5)
        ADD_FAILURE() << "type=" << to_string(w.type) << " rows=" << w.rows << " cols=" << w.cols << " n_tokens=" << n_tokens
                      << " r=" << r << " t=" << t << ": gpu " << y[i] << " ref " << y_ref[i] << " tol " << tol;
    }
  }
}

class CudaMatmul : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_REQUIRE_GPU();
    ASSERT_NE(cublas(), nullptr) << cublas_load_error();
    ASSERT_EQ(cublas()->create(&blas_), CUBLAS_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (blas_) cublas()->destroy(blas_);
  }

  std::vector<float> run(const cpu::test::test_weight& w, const std::vector<float>& x, int64_t n_tokens) {
    device_vector<uint8_t> dw(w.bytes);
    device_vector<float> dx(x), dy(static_cast<size_t>(n_tokens * w.ref.rows));
    const cpu::weight_ref ref{w.ref.type, w.ref.rows, w.ref.cols, dw.get()};
    device_vector<uint8_t> scratch(matmul_scratch_bytes(ref, n_tokens));
    EXPECT_DEV_OK(matmul(matmul_context{blas_, scratch.get(), scratch.size()}, ref, dx.get(), n_tokens, dy.get(), nullptr));
    return dy.to_host();
  }

  cublasHandle_t blas_ = nullptr;
};

TEST_F(CudaMatmul, MatchesTheReferenceForEveryTypeShapeAndTokenCount) {
  const int64_t rows_list[] = {1, 3, 5, 37, 130};
  const int64_t n_tokens_list[] = {1, 2, 5, 8, 9, 17, 33};
  uint32_t seed = 1;
  for (dtype t : cpu::test::all_types) {
    const std::vector<int64_t> cols_list = is_quantized(t) ? std::vector<int64_t>{32, 64, 96, 512}
                                                           : std::vector<int64_t>{1, 7, 16, 17, 33, 100, 256};
    for (int64_t rows : rows_list) {
      for (int64_t cols : cols_list) {
        cpu::test::test_weight w(t, rows, cols, seed++);
        for (int64_t n : n_tokens_list) {
          const auto x = random_floats(static_cast<size_t>(n * cols), seed++);
          expect_close(w.ref, effective_activations(t, x, cols, n), n, run(w, x, n));
        }
      }
    }
  }
}

TEST_F(CudaMatmul, LargeMatrixStaysCorrect) {
  for (dtype t : cpu::test::all_types) {
    cpu::test::test_weight w(t, 203, 1024, 7);
    for (int64_t n : {1, 70}) {
      const auto x = random_floats(static_cast<size_t>(n * 1024), 8);
      expect_close(w.ref, effective_activations(t, x, 1024, n), n, run(w, x, n));
    }
  }
}

TEST_F(CudaMatmul, RefusesTooLittleScratch) {
  cpu::test::test_weight w(dtype::q8_0, 4, 64, 9);
  device_vector<uint8_t> dw(w.bytes);
  device_vector<float> dx(64), dy(4);
  const dev_status s = matmul(matmul_context{blas_, nullptr, 0}, cpu::weight_ref{dtype::q8_0, 4, 64, dw.get()}, dx.get(),
                              1, dy.get(), nullptr);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace troupe::cuda
