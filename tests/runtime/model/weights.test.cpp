#include "runtime/model/weights.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "runtime/format/gguf.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using troupe::testing::read_all;
using troupe::testing::temp_dir;
using troupe::testing::write_all;

const fs::path models = fs::path(TROUPE_SHARED_DIR) / "models";
const fs::path stories = models / "stories260K";

// ctx is not compared: the GGUF conversion of stories260K says llama.context_length = 2048 where
// the llama2.c checkpoint and config.json say 512 (the length it was trained at).
void expect_stories_hparams(const model_hparams& hp) {
  EXPECT_EQ(hp.architecture, "llama");
  EXPECT_EQ(hp.dim, 64);
  EXPECT_EQ(hp.ffn_dim, 172);
  EXPECT_EQ(hp.n_layers, 5);
  EXPECT_EQ(hp.n_heads, 8);
  EXPECT_EQ(hp.n_kv_heads, 4);
  EXPECT_EQ(hp.head_dim, 8);
  EXPECT_EQ(hp.n_vocab, 512);
  EXPECT_TRUE(hp.tied_embeddings);
  EXPECT_FALSE(hp.qkv_bias);
  EXPECT_FLOAT_EQ(hp.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(hp.rope_theta, 10000.0f);
  EXPECT_FALSE(hp.scaling.llama3);
}

bool same_bytes(const tensor_ref& a, const tensor_ref& b) {
  return a.type == b.type && a.shape == b.shape && a.nbytes == b.nbytes &&
         std::memcmp(a.data, b.data, a.nbytes) == 0;
}

// HF checkpoints order each head's rows as (all even pair members, then all odd) for rotate-half
// RoPE: HF row h*hd + i*hd/2 + j holds original row h*hd + 2j + i.
std::vector<float> unpermute_rows(const tensor_ref& t, int64_t n_heads) {
  const int64_t rows = t.shape[0], cols = t.shape[1], hd = rows / n_heads;
  const auto* src = static_cast<const float*>(t.data);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < hd / 2; ++j)
        std::memcpy(&out[static_cast<size_t>((h * hd + 2 * j + i) * cols)],
                    src + (h * hd + i * hd / 2 + j) * cols, static_cast<size_t>(cols) * 4);
  return out;
}

TEST(weights, stories260k_loads_the_same_from_gguf_llama2c_and_hf) {
  auto g = load_model_weights(stories / "stories260K.gguf");
  ASSERT_TRUE(g) << g.error().what();
  auto b = load_model_weights(stories / "stories260K.bin");
  ASSERT_TRUE(b) << b.error().what();
  auto h = load_model_weights(stories / "hf");
  ASSERT_TRUE(h) << h.error().what();
  EXPECT_EQ(g->format, "gguf");
  EXPECT_EQ(b->format, "llama2c");
  EXPECT_EQ(h->format, "safetensors");
  for (const auto* w : {&*g, &*b, &*h}) expect_stories_hparams(w->hp);
  EXPECT_EQ(b->hp.context_length, 512);
  EXPECT_EQ(h->hp.context_length, 512);
  EXPECT_EQ(g->hp.context_length, 2048);
  EXPECT_EQ(g->hp.rope, cpu::rope_style::interleaved);
  EXPECT_EQ(b->hp.rope, cpu::rope_style::interleaved);
  EXPECT_EQ(h->hp.rope, cpu::rope_style::neox);
  EXPECT_NE(g->gguf, nullptr);
  EXPECT_EQ(b->tokenizer_path, stories / "tok512.bin");
  EXPECT_EQ(h->tokenizer_path, stories / "hf/tokenizer.model");

  // 2 + 9 per layer: the GGUF's output.weight is a bit-identical copy of token_embd.weight, so it
  // loads as tied, like the other two.
  EXPECT_EQ(g->tensors.size(), 2u + 9u * 5u);
  EXPECT_EQ(g->find("output.weight"), nullptr);
  for (const auto& [name, t] : g->tensors) {
    SCOPED_TRACE(name);
    const auto* bt = b->find(name);
    const auto* ht = h->find(name);
    ASSERT_NE(bt, nullptr);
    ASSERT_NE(ht, nullptr);
    EXPECT_TRUE(same_bytes(t, *bt));
    const bool is_q = name.find("attn_q.weight") != std::string::npos;
    const bool is_k = name.find("attn_k.weight") != std::string::npos;
    if (!is_q && !is_k) {
      EXPECT_TRUE(same_bytes(t, *ht));
      continue;
    }
    EXPECT_EQ(t.shape, ht->shape);
    EXPECT_NE(std::memcmp(t.data, ht->data, t.nbytes), 0) << "the HF copy should be row-permuted";
    const auto rows = unpermute_rows(*ht, is_q ? 8 : 4);
    EXPECT_EQ(std::memcmp(rows.data(), t.data, t.nbytes), 0);
  }
  EXPECT_EQ(g->parameter_count(), b->parameter_count());
  EXPECT_EQ(g->total_bytes(), static_cast<size_t>(g->parameter_count()) * 4);
}

TEST(weights, tiny_random_gguf_has_f16_matrices_and_f32_norms) {
  auto w = load_model_weights(models / "llama2-tiny-random/llama-2-tiny-random.gguf");
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->hp.n_vocab, 32000);
  EXPECT_EQ(w->hp.n_layers, 1);
  EXPECT_EQ(w->find("blk.0.attn_q.weight")->type, dtype::f16);
  EXPECT_EQ(w->find("blk.0.ffn_down.weight")->type, dtype::f16);
  EXPECT_EQ(w->find("blk.0.attn_norm.weight")->type, dtype::f32);
  EXPECT_EQ(w->find("output_norm.weight")->type, dtype::f32);
}

TEST(weights, missing_path_and_unknown_files_are_clean_errors) {
  auto w = load_model_weights("/nonexistent/model.gguf");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), errc::not_found);
  temp_dir dir;
  w = load_model_weights(dir.path());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), errc::not_found);
  write_all(dir / "x.txt", "hello", 5);
  w = load_model_weights(dir / "x.txt");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), errc::bad_format);
}

// Cuts each stories260K file at many offsets; every load must fail with an error naming the file.
TEST(weights, truncated_copies_of_every_format_fail_cleanly) {
  temp_dir dir;
  auto check = [&](const fs::path& original, const fs::path& cut_path, const fs::path& load_path) {
    const auto bytes = read_all(original);
    std::vector<size_t> cuts;
    for (size_t i = 0; i < 48; ++i) cuts.push_back(i);
    for (size_t i = 48; i < bytes.size(); i += bytes.size() / 53) cuts.push_back(i);
    cuts.push_back(bytes.size() - 1);
    for (size_t cut : cuts) {
      write_all(cut_path, bytes.data(), cut);
      auto w = load_model_weights(load_path);
      ASSERT_FALSE(w) << original << " cut at " << cut;
      EXPECT_EQ(w.error().code(), errc::truncated) << original << " cut at " << cut << ": " << w.error().what();
      EXPECT_NE(w.error().message().find(cut_path.filename().string()), std::string::npos) << w.error().what();
    }
  };
  check(stories / "stories260K.gguf", dir / "cut.gguf", dir / "cut.gguf");
  check(stories / "stories260K.bin", dir / "cut.bin", dir / "cut.bin");
  fs::create_directories(dir / "hf");
  fs::copy_file(stories / "hf/config.json", dir / "hf/config.json");
  check(stories / "hf/model.safetensors", dir / "hf/model.safetensors", dir / "hf");
}

}  // namespace
}  // namespace troupe
