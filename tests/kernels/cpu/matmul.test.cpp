// The fast matmul against ref::matmul for every weight type, and its determinism across batch
// composition and thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/cpu/matmul_internal.hpp"
#include "tests/kernels/cpu/test_util.hpp"

namespace troupe::cpu {
namespace {

using test::all_types;
using test::is_quantized;
using test::random_floats;
using test::test_weight;

/// The activations the fast path actually multiplies: for quantized weights it rounds x to Q8_0
/// first (as llama.cpp does), so the oracle gets the same rounded activations.
std::vector<float> effective_activations(dtype t, const std::vector<float>& x, int64_t cols) {
  if (!is_quantized(t)) return x;
  std::vector<float> out(x.size());
  std::vector<block_q8_0> blocks(static_cast<size_t>(cols / qk));
  for (size_t off = 0; off < x.size(); off += static_cast<size_t>(cols)) {
    quantize_row_q8_0(x.data() + off, blocks.data(), cols);
    dequantize_row(dtype::q8_0, blocks.data(), out.data() + off, cols);
  }
  return out;
}

/// Checks y against the reference with a bound that follows from float accumulation: the fast
/// kernels add products into 8 or 16 float lanes (cols / 8 sequential adds per lane at most), then
/// sum the lanes, and the quantized ones round d_w * d_x and the block dot once more; the error is
/// below (cols / 8 + 16) * 2^-24 * sum_c |w_c x_c|. The reference accumulates in double.
void expect_close_to_ref(const weight_ref& w, const std::vector<float>& x_eff, int64_t n_tokens,
                         const std::vector<float>& y, const char* what) {
  std::vector<float> y_ref(y.size());
  ref::matmul(w, x_eff.data(), n_tokens, y_ref.data());
  std::vector<float> row(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows; ++r) {
    ref::get_row(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double mag = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) mag += std::fabs(static_cast<double>(row[c]) * x_eff[t * w.cols + c]);
      const double tol = (static_cast<double>(w.cols) / 8 + 16) * std::ldexp(1.0, -24) * mag + 1e-30;
      const size_t i = static_cast<size_t>(t * w.rows + r);
      if (std::fabs(static_cast<double>(y[i]) - y_ref[i]) > tol && ++failures < 5) {
        ADD_FAILURE() << what << " type=" << to_string(w.type) << " rows=" << w.rows << " cols=" << w.cols
                      << " n_tokens=" << n_tokens << " r=" << r << " t=" << t << ": fast " << y[i]
                      << " ref " << y_ref[i] << " tol " << tol;
      }
    }
  }
}

TEST(Matmul, MatchesReferenceForEveryTypeAndShape) {
  thread_pool pool2(2), pool3(3);
  const int64_t rows_list[] = {1, 3, 4, 5, 37, 130};
  const int64_t n_tokens_list[] = {1, 2, 3, 4, 5, 7, 8, 16, 17, 33};
  uint32_t seed = 1;
  for (dtype t : all_types) {
    const std::vector<int64_t> cols_list = is_quantized(t) ? std::vector<int64_t>{32, 64, 96, 512}
                                                           : std::vector<int64_t>{1, 7, 16, 17, 33, 100, 256};
    for (int64_t rows : rows_list) {
      for (int64_t cols : cols_list) {
        for (bool pack : test::pack_variants(t)) {
          test_weight w(t, rows, cols, seed++, pack);
          for (int64_t n : n_tokens_list) {
            const auto x = random_floats(static_cast<size_t>(n * cols), seed++);
            const auto x_eff = effective_activations(t, x, cols);
            for (thread_pool* pool : {&pool2, &pool3}) {
              std::vector<float> y(static_cast<size_t>(n * rows), NAN);
              matmul(*pool, w.ref, x.data(), n, y.data());
              expect_close_to_ref(w.ref, x_eff, n, y, pack ? "packed matmul" : "matmul");
            }
          }
        }
      }
    }
  }
}

TEST(Matmul, LargeMatrixUsesThreadsAndStaysCorrect) {
  // Big enough to take the multi-threaded and token-chunked paths (rows * cols above the threshold,
  // n_tokens above the chunk size).
  thread_pool pool(2);
  for (dtype t : all_types) {
    for (bool pack : test::pack_variants(t)) {
      test_weight w(t, 203, 1024, 7, pack);
      const int64_t n = 70;
      const auto x = random_floats(static_cast<size_t>(n * 1024), 8);
      std::vector<float> y(static_cast<size_t>(n * 203));
      matmul(pool, w.ref, x.data(), n, y.data());
      expect_close_to_ref(w.ref, effective_activations(t, x, 1024), n, y, pack ? "large packed" : "large");
    }
  }
}

TEST(Matmul, ActivationQuantizationMatchesGgmlReference) {
  // Includes exact halves (x * 127 / amax = k + 0.5) where round-half-even would differ from roundf.
  auto x = random_floats(32 * 40, 3, -3.0f, 3.0f);
  for (int b = 0; b < 40; ++b) {
    x[b * 32] = 127.0f;
    x[b * 32 + 1] = static_cast<float>(b % 20) + 0.5f;
    x[b * 32 + 2] = -(static_cast<float>(b % 20) + 0.5f);
  }
  std::fill_n(x.begin() + 32 * 5, 32, 0.0f);  // an all-zero block
  std::vector<block_q8_0> expect(40);
  quantize_row_q8_0(x.data(), expect.data(), static_cast<int64_t>(x.size()));
  std::vector<int8_t> qs(x.size());
  std::vector<float> d(40);
  std::vector<int32_t> corr(40);
  detail::quantize_activations(x.data(), static_cast<int64_t>(x.size()), 0, 1, qs.data(), d.data(),
                               corr.data(), 128);
  for (int b = 0; b < 40; ++b) {
    EXPECT_EQ(d[b], fp16_to_fp32(expect[b].d)) << "block " << b;
    int32_t sum = 0;
    for (int j = 0; j < qk; ++j) {
      ASSERT_EQ(qs[b * qk + j], expect[b].qs[j]) << "block " << b << " element " << j;
      sum += expect[b].qs[j];
    }
    EXPECT_EQ(corr[b], -128 * sum) << "block " << b;
  }
}

// The serving scheduler batches unrelated sequences: token t's output must be bit-identical
// whatever its batch-mates, its place in the batch, and the thread count.
TEST(Matmul, OutputOfATokenDoesNotDependOnTheBatchOrThreads) {
  thread_pool pool1(1), pool2(2), pool3(3);
  constexpr int64_t rows = 45, cols = 320, n_all = 80;  // rows not a multiple of the row tile
  for (dtype t : all_types) {
    for (bool pack : test::pack_variants(t)) {
      test_weight w(t, rows, cols, 11, pack);
      // Large enough that the 2-thread runs really split rows (rows * cols above the threshold).
      test_weight wide(t, 203, 320, 12, pack);
      for (const weight_ref* wr : {&w.ref, &wide.ref}) {
        const auto x = random_floats(static_cast<size_t>(n_all * cols), 12, -2.0f, 2.0f);
        std::vector<float> solo(static_cast<size_t>(n_all * wr->rows));
        for (int64_t i = 0; i < n_all; ++i) matmul(pool1, *wr, x.data() + i * cols, 1, solo.data() + i * wr->rows);
        for (int64_t batch : {2, 5, 16, 33, 70}) {  // 70: more than one token chunk
          for (thread_pool* pool : {&pool1, &pool2, &pool3}) {
            // Slide the batch window so each token appears at several positions.
            for (int64_t start : {int64_t{0}, int64_t{1}, n_all - batch}) {
              std::vector<float> y(static_cast<size_t>(batch * wr->rows));
              matmul(*pool, *wr, x.data() + start * cols, batch, y.data());
              for (int64_t i = 0; i < batch; ++i) {
                ASSERT_EQ(0, std::memcmp(y.data() + i * wr->rows, solo.data() + (start + i) * wr->rows,
                                         static_cast<size_t>(wr->rows) * sizeof(float)))
                    << "type " << to_string(t) << (pack ? " packed" : "") << " rows " << wr->rows << " batch " << batch << " start " << start
                    << " token " << start + i << " threads " << pool->size();
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace troupe::cpu
