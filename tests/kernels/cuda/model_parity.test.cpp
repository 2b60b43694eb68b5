// Whole-model parity: the CUDA runner gives the CPU's greedy tokens on stories260K and on random-weight
// models of every weight type, and close logits for a mixed batch (prefill chunks, decodes, a forked
// sequence whose block was copied).
//
// Greedy equality holds where both devices multiply fp32 activations: everything for f32 weights,
// Q8_0/Q4_0 (both round activations to Q8_0 the same way), and f16/bf16 up to gemv_max_tokens tokens
// per step. Longer f16/bf16 prompts go through cuBLAS with activations rounded to the weight's type,
// so those are held to close logits, not to identical tokens.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/cuda/matmul.cuh"
#include "runtime/model/make_model.hpp"
#include "runtime/model/model_runner.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

std::unique_ptr<model_runner> load(const fs::path& path, const device_spec& device) {
  auto w = load_model_weights(path);
  EXPECT_TRUE(w) << w.error().what();
  if (!w) return nullptr;
  runner_options o;
  o.device = device;
  o.cpu.threads = 2;
  o.kv.n_blocks = 64;
  auto r = create_model_runner(std::move(*w), o);
  EXPECT_TRUE(r) << r.error().what();
  return r ? std::move(*r) : nullptr;
}

int32_t argmax(const std::vector<float>& row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

/// The prompt as one chunk, then `steps` greedy decode steps; blocks 0.. in order.
std::vector<int32_t> greedy(model_runner& r, const std::vector<int32_t>& prompt, int steps) {
  std::vector<int32_t> table(16);
  for (int32_t b = 0; b < 16; ++b) table[static_cast<size_t>(b)] = b;
  std::vector<float> logits(static_cast<size_t>(r.hparams().n_vocab));
  forward_batch pre;
  pre.seqs.push_back(seq_step{prompt, 0, table, true});
  EXPECT_TRUE(r.forward(pre, logits));
  std::vector<int32_t> out;
  auto pos = static_cast<int64_t>(prompt.size());
  for (int i = 0; i < steps; ++i, ++pos) {
    const int32_t tok = argmax(logits);
    out.push_back(tok);
    forward_batch d;
    d.seqs.push_back(seq_step{std::span<const int32_t>(&tok, 1), pos, table, true});
    EXPECT_TRUE(r.forward(d, logits));
  }
  return out;
}

const device_spec cpu{};
const device_spec gpu{device_spec::kind_t::cuda, 0};
const std::vector<int32_t> short_prompt = {1, 403, 407, 261, 378};  // <= gemv_max_tokens
const std::vector<int32_t> long_prompt = {1, 37, 200, 5, 99, 400, 12, 7, 301, 45, 88, 3, 250, 17, 60, 2, 410, 9};
static_assert(5 <= cuda::gemv_max_tokens);

TEST(CudaModelParity, Stories260KGreedyTokensEqualTheCpus) {
  TROUPE_REQUIRE_GPU();
  auto c = load(stories, cpu), g = load(stories, gpu);
  ASSERT_TRUE(c && g);
  for (const auto& prompt : {short_prompt, long_prompt}) EXPECT_EQ(greedy(*g, prompt, 32), greedy(*c, prompt, 32));
}

class CudaRandomModelParity : public ::testing::Test {
 protected:
  static fs::path make(const std::string& shape, dtype t) {
    const fs::path dir = fs::temp_directory_path() / ("troupe-cuda-parity-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    make_model_options o;
    o.shape = shape;
    o.type = t;
    o.seed = 11;
    o.output = dir / (shape + "-" + std::string(to_string(t)) + ".gguf");
    auto made = make_random_model(o);
    EXPECT_TRUE(made) << made.error().what();
    return o.output;
  }
  static void TearDownTestSuite() {
    fs::remove_all(fs::temp_directory_path() / ("troupe-cuda-parity-" + std::to_string(::getpid())));
  }
};

TEST_F(CudaRandomModelParity, GreedyTokensOfEveryWeightTypeEqualTheCpus) {
  TROUPE_REQUIRE_GPU();
  for (dtype t : {dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::f32}) {
    SCOPED_TRACE(to_string(t));
    const fs::path path = make("stories-260k", t);
    auto c = load(path, cpu), g = load(path, gpu);
    ASSERT_TRUE(c && g);
    EXPECT_EQ(greedy(*g, short_prompt, 24), greedy(*c, short_prompt, 24));
    if (t == dtype::q8_0 || t == dtype::q4_0 || t == dtype::f32) {
      EXPECT_EQ(greedy(*g, long_prompt, 24), greedy(*c, long_prompt, 24));
    }
  }
}

TEST_F(CudaRandomModelParity, Llama110mShapeGreedyTokensEqualTheCpus) {
  TROUPE_REQUIRE_GPU();
  const fs::path path = make("llama-110m", dtype::f16);
  auto c = load(path, cpu), g = load(path, gpu);
  ASSERT_TRUE(c && g);
  EXPECT_EQ(greedy(*g, short_prompt, 16), greedy(*c, short_prompt, 16));
}

/// One mixed step on both devices: a prefill chunk, two decodes, and a fork whose first block was
/// copied from its parent; every row of logits within rel_tol of the row's largest magnitude.
void expect_close_mixed_batch(model_runner& c, model_runner& g, double rel_tol, const char* what) {
  const int64_t V = c.hparams().n_vocab;
  std::vector<float> lc(static_cast<size_t>(4 * V)), lg(lc.size());
  // Warm the cache on both: sequence A (blocks 0, 1) and B (blocks 2, 3) take their prompts.
  const std::vector<int32_t> ta = {0, 1}, tb = {2, 3}, tc = {4, 5}, tfork = {6, 1};
  for (model_runner* r : {&c, &g}) {
    forward_batch warm;
    warm.seqs.push_back(seq_step{long_prompt, 0, ta, false});
    warm.seqs.push_back(seq_step{short_prompt, 0, tb, false});
    ASSERT_TRUE(r->forward(warm, lc));
    // The fork shares A's history: block 0 copied to 6 (copy-on-write), block 1 shared.
    ASSERT_TRUE(r->copy_block(0, 6));
  }
  const int32_t next_a = 42, next_b = 7, next_fork = 300;
  auto step = [&](model_runner& r, std::vector<float>& out) {
    forward_batch b;
    b.seqs.push_back(seq_step{long_prompt, 0, tc, true});  // a fresh prefill chunk
    b.seqs.push_back(seq_step{std::span<const int32_t>(&next_a, 1), static_cast<int64_t>(long_prompt.size()), ta, true});
    b.seqs.push_back(seq_step{std::span<const int32_t>(&next_b, 1), static_cast<int64_t>(short_prompt.size()), tb, true});
    b.seqs.push_back(
        seq_step{std::span<const int32_t>(&next_fork, 1), static_cast<int64_t>(long_prompt.size()), tfork, true});
    EXPECT_TRUE(r.forward(b, out));
  };
  step(c, lc);
  step(g, lg);
  for (int64_t row = 0; row < 4; ++row) {
    double scale = 0;
    for (int64_t i = 0; i < V; ++i) scale = std::max(scale, std::fabs(static_cast<double>(lc[row * V + i])));
    for (int64_t i = 0; i < V; ++i)
      ASSERT_NEAR(lg[row * V + i], lc[row * V + i], rel_tol * scale + 1e-6) << what << " row " << row << " logit " << i;
  }
}

TEST_F(CudaRandomModelParity, MixedBatchWithAForkGivesCloseLogits) {
  TROUPE_REQUIRE_GPU();
  {
    auto c = load(stories, cpu), g = load(stories, gpu);
    ASSERT_TRUE(c && g);
    expect_close_mixed_batch(*c, *g, 1e-4, "stories260K");
  }
  // The 18-token chunk runs through cuBLAS on activations rounded to f16 (2^-11) or bf16 (2^-8), and
  // the rounding carries through five layers and into the cache the other rows read.
  for (const auto& [t, tol] : {std::pair{dtype::f16, 4e-3}, std::pair{dtype::bf16, 3e-2}}) {
    const fs::path path = make("stories-260k", t);
    auto c = load(path, cpu), g = load(path, gpu);
    ASSERT_TRUE(c && g);
    expect_close_mixed_batch(*c, *g, tol, to_string(t).data());
  }
}

}  // namespace
}  // namespace troupe
