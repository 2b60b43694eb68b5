#include "runtime/model/make_model.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/quant.hpp"
#include "runtime/format/gguf.hpp"
#include "runtime/model/weights.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe {
namespace {

using troupe::testing::read_all;
using troupe::testing::temp_dir;

bool same_value(const format::gguf_value& a, const format::gguf_value& b) {
  if (a.v.index() != b.v.index()) return false;
  if (const auto* x = a.as_array()) {
    const auto* y = b.as_array();
    if (x->size() != y->size()) return false;
    for (size_t i = 0; i < x->size(); ++i)
      if (!same_value((*x)[i], (*y)[i])) return false;
    return true;
  }
  if (const auto* x = a.as_string()) return *x == *b.as_string();
  if (auto x = a.as_bool()) return *x == *b.as_bool();
  return a.as_float() == b.as_float();
}

const std::filesystem::path models = std::filesystem::path(TROUPE_SHARED_DIR) / "models";

TEST(make_model, known_shapes_include_the_benchmark_sizes) {
  for (const char* name : {"stories-260k", "llama-110m", "tinyllama-1.1b", "llama-8b"})
    EXPECT_TRUE(find_model_shape(name)) << name;
  auto s = find_model_shape("llama-8b");
  EXPECT_EQ(s->n_vocab, 128256);
  EXPECT_EQ(s->rope_theta, 500000.0f);
  EXPECT_FALSE(find_model_shape("gpt-5"));
}

TEST(make_model, every_dtype_loads_back_with_the_shape_and_types) {
  temp_dir dir;
  for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0}) {
    SCOPED_TRACE(std::string(to_string(t)));
    make_model_options o;
    o.type = t;
    o.seed = 7;
    o.output = dir / ("m-" + std::string(to_string(t)) + ".gguf");
    auto made = make_random_model(o);
    ASSERT_TRUE(made) << made.error().what();
    auto w = load_model_weights(o.output);
    ASSERT_TRUE(w) << w.error().what();
    const auto& hp = w->hp;
    EXPECT_EQ(hp.architecture, "llama");
    EXPECT_EQ(hp.dim, 64);
    EXPECT_EQ(hp.ffn_dim, 192);
    EXPECT_EQ(hp.n_layers, 5);
    EXPECT_EQ(hp.n_heads, 8);
    EXPECT_EQ(hp.n_kv_heads, 4);
    EXPECT_EQ(hp.n_vocab, 512);
    EXPECT_EQ(hp.context_length, 512);
    EXPECT_FALSE(hp.tied_embeddings);
    EXPECT_EQ(w->parameter_count(), made->parameter_count);
    EXPECT_EQ(made->file_bytes, std::filesystem::file_size(o.output));
    EXPECT_EQ(w->find("token_embd.weight")->type, t);
    EXPECT_EQ(w->find("output.weight")->type, t);
    EXPECT_EQ(w->find("blk.4.ffn_down.weight")->type, t);
    EXPECT_EQ(w->find("blk.4.ffn_norm.weight")->type, dtype::f32);
    EXPECT_EQ(static_cast<const float*>(w->find("output_norm.weight")->data)[63], 1.0f);
    // Values: finite, about N(0, 0.02).
    const auto* q = w->find("blk.0.attn_q.weight");
    std::vector<float> row(64);
    double sum2 = 0;
    for (int64_t r = 0; r < 64; ++r) {
      cpu::dequantize_row(t, static_cast<const uint8_t*>(q->data) + r * row_bytes(t, 64), row.data(), 64);
      for (float x : row) {
        ASSERT_TRUE(std::isfinite(x));
        ASSERT_LE(std::fabs(x), 0.04f);
        sum2 += double(x) * x;
      }
    }
    EXPECT_NEAR(std::sqrt(sum2 / (64 * 64)), 0.02, 0.004);
  }
}

TEST(make_model, same_seed_gives_same_bytes_and_another_seed_does_not) {
  temp_dir dir;
  make_model_options o;
  o.type = dtype::q8_0;
  o.seed = 1;
  o.output = dir / "a.gguf";
  ASSERT_TRUE(make_random_model(o));
  o.output = dir / "b.gguf";
  ASSERT_TRUE(make_random_model(o));
  o.seed = 2;
  o.output = dir / "c.gguf";
  ASSERT_TRUE(make_random_model(o));
  EXPECT_EQ(read_all(dir / "a.gguf"), read_all(dir / "b.gguf"));
  EXPECT_NE(read_all(dir / "a.gguf"), read_all(dir / "c.gguf"));
}

TEST(make_model, tokenizer_is_copied_and_sets_the_vocab_size) {
  temp_dir dir;
  make_model_options o;
  o.output = dir / "m.gguf";
  o.tokenizer_from = models / "llama2-tiny-random/llama-2-tiny-random.gguf";
  auto made = make_random_model(o);
  ASSERT_TRUE(made) << made.error().what();
  EXPECT_EQ(made->shape.n_vocab, 32000);
  auto w = load_model_weights(o.output);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->hp.n_vocab, 32000);
  EXPECT_EQ(w->find("token_embd.weight")->shape, (std::vector<int64_t>{32000, 64}));
  auto src = format::gguf_file::open(o.tokenizer_from);
  ASSERT_TRUE(src);
  for (const auto& [key, value] : (*src)->metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    const auto* copied = w->gguf->find(key);
    ASSERT_NE(copied, nullptr) << key;
    EXPECT_TRUE(same_value(*copied, value)) << key;
  }
  EXPECT_EQ(*w->gguf->find("tokenizer.ggml.tokens")->as_array()->at(100).as_string(),
            *(*src)->find("tokenizer.ggml.tokens")->as_array()->at(100).as_string());
}

TEST(make_model, unknown_shape_is_invalid_argument) {
  make_model_options o;
  o.shape = "nope";
  o.output = "/tmp/never.gguf";
  auto made = make_random_model(o);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code(), errc::invalid_argument);
  EXPECT_NE(made.error().message().find("llama-8b"), std::string::npos);
}

}  // namespace
}  // namespace troupe
