// Qwen2-style projection biases on the real stories260K weights: zero biases leave the logits
// bit-identical, a bias on V changes them, and a model that declares biases must have them.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <tuple>
#include <string>
#include <vector>

#include "runtime/model/llama_model.hpp"

namespace troupe {
namespace {

const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

std::vector<float> last_logits(model_weights w) {
  auto m = llama_model::create(std::move(w), model_options{1});
  EXPECT_TRUE(m) << m.error().what();
  const auto& hp = (*m)->hparams();
  auto kv = kv_pool::create(hp.n_layers, hp.n_kv_heads, hp.head_dim, kv_pool_config{16, 8});
  EXPECT_TRUE(kv);
  const std::vector<int32_t> prompt{1, 403, 407, 261, 378, 432, 383};
  const std::vector<int32_t> blocks{0};
  std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
  forward_batch b;
  b.seqs.push_back(seq_step{prompt, 0, blocks, true});
  EXPECT_TRUE((*m)->forward(b, **kv, logits));
  return logits;
}

/// Adds f32 bias tensors (owned by the weights) of the given value to every layer.
void add_biases(model_weights& w, float q, float k, float v) {
  const auto& hp = w.hp;
  w.hp.qkv_bias = true;
  const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  for (int64_t l = 0; l < hp.n_layers; ++l) {
    for (auto [name, n, value] : {std::tuple{"attn_q.bias", q_dim, q}, {"attn_k.bias", kv_dim, k}, {"attn_v.bias", kv_dim, v}}) {
      auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(n), value);
      w.tensors["blk." + std::to_string(l) + "." + name] =
          tensor_ref{dtype::f32, {n}, buf->data(), static_cast<size_t>(n) * 4};
      w.storage.push_back(buf);
    }
  }
}

TEST(QkvBias, ZeroBiasesLeaveLogitsUnchangedAndAVBiasChangesThem) {
  auto plain = load_model_weights(stories);
  ASSERT_TRUE(plain) << plain.error().what();
  const auto base = last_logits(*plain);

  auto zero = load_model_weights(stories);
  ASSERT_TRUE(zero);
  add_biases(*zero, 0.0f, 0.0f, 0.0f);
  EXPECT_EQ(last_logits(*zero), base);

  auto shifted = load_model_weights(stories);
  ASSERT_TRUE(shifted);
  add_biases(*shifted, 0.0f, 0.0f, 0.05f);
  const auto moved = last_logits(*shifted);
  double diff = 0.0;
  for (size_t i = 0; i < base.size(); ++i) diff += std::abs(moved[i] - base[i]);
  EXPECT_GT(diff, 1e-2);
}

TEST(QkvBias, AModelThatNeedsBiasesButLacksThemIsRefusedByName) {
  auto w = load_model_weights(stories);
  ASSERT_TRUE(w);
  w->hp.qkv_bias = true;
  auto m = llama_model::create(std::move(*w));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), errc::not_found);
  EXPECT_NE(m.error().message().find("attn_q.bias"), std::string::npos) << m.error().message();
}

}  // namespace
}  // namespace troupe
