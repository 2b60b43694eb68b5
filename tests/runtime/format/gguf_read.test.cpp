#include <gtest/gtest.h>

#include "runtime/format/gguf.hpp"

namespace troupe::format {
namespace {

const std::filesystem::path models = std::filesystem::path(TROUPE_SHARED_DIR) / "models";

TEST(gguf_read, stories260k_has_metadata_and_f32_tensors) {
  auto f = gguf_file::open(models / "stories260K/stories260K.gguf");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->version(), 3u);
  auto* arch = (*f)->find("general.architecture");
  ASSERT_NE(arch, nullptr);
  ASSERT_NE(arch->as_string(), nullptr);
  EXPECT_EQ(*arch->as_string(), "llama");
  auto* tokens = (*f)->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_NE(tokens->as_array(), nullptr);
  EXPECT_EQ(tokens->as_array()->size(), 512u);
  auto* emb = (*f)->tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, dtype::f32);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(emb->nbytes, 512u * 64u * 4u);
}

TEST(gguf_read, tiny_random_has_f16_matrices) {
  auto f = gguf_file::open(models / "llama2-tiny-random/llama-2-tiny-random.gguf");
  ASSERT_TRUE(f) << f.error().what();
  auto* q = (*f)->tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, dtype::f16);
  auto* n = (*f)->tensor("blk.0.attn_norm.weight");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->type, dtype::f32);
}

TEST(gguf_read, missing_file_is_not_found) {
  auto f = gguf_file::open("/nonexistent/x.gguf");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::not_found);
}

}  // namespace
}  // namespace troupe::format
