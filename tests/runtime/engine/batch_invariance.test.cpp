// A batch of different sequences, mixing prefill chunks and decode steps, must give every sequence
// exactly the logits it gets when it runs alone; and the order of blocks in a block table must not
// matter (paged attention reads through the table).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/engine/engine.hpp"

namespace troupe {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

std::unique_ptr<engine> load(int threads) {
  engine_options opts;
  opts.model_path = shared_dir + "/models/stories260K/stories260K.gguf";
  opts.model.threads = threads;
  opts.kv.n_blocks = 512;
  auto e = engine::load(opts);
  EXPECT_TRUE(e) << e.error().what();
  return e ? std::move(*e) : nullptr;
}

int32_t argmax(const std::vector<float>& v, size_t off, size_t n) {
  return static_cast<int32_t>(std::max_element(v.begin() + off, v.begin() + off + n) - (v.begin() + off));
}

/// Greedy-decodes `steps` tokens for one sequence alone (prefill in one call), returning every
/// logits row it saw.
std::vector<std::vector<float>> run_alone(engine& e, const std::vector<int32_t>& prompt, int steps) {
  const int64_t V = e.hparams().n_vocab;
  block_table t;
  std::vector<std::vector<float>> rows;
  std::vector<float> logits(static_cast<size_t>(V));
  EXPECT_TRUE(t.reserve(e.blocks(), static_cast<int64_t>(prompt.size()) + steps, e.block_size()));
  forward_batch b;
  b.seqs.push_back(seq_step{prompt, 0, t.blocks, true});
  EXPECT_TRUE(e.forward(b, logits));
  rows.push_back(logits);
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (int i = 0; i < steps; ++i, ++pos) {
    const int32_t tok = argmax(logits, 0, static_cast<size_t>(V));
    forward_batch d;
    d.seqs.push_back(seq_step{std::span<const int32_t>(&tok, 1), pos, t.blocks, true});
    EXPECT_TRUE(e.forward(d, logits));
    rows.push_back(logits);
  }
  t.release(e.blocks());
  return rows;
}

TEST(BatchInvariance, EightSequencesMixingPrefillChunksAndDecodeMatchRunningAlone) {
  for (int threads : {1, 2}) {
    auto e = load(threads);
    ASSERT_TRUE(e);
    const int64_t V = e->hparams().n_vocab;
    std::mt19937 rng(7);
    const int n_seq = 8, steps = 12;
    std::vector<std::vector<int32_t>> prompts;
    for (int s = 0; s < n_seq; ++s) {
      std::vector<int32_t> p{1};
      const int len = 3 + s * 9;  // 4 .. 67 tokens: several cross block boundaries
      for (int i = 0; i < len; ++i) p.push_back(static_cast<int32_t>(3 + rng() % (V - 3)));
      prompts.push_back(p);
    }
    std::vector<std::vector<std::vector<float>>> alone;
    for (const auto& p : prompts) alone.push_back(run_alone(*e, p, steps));

    // Together: sequence s starts s iterations late and prefills in chunks of 5 tokens, so every
    // iteration mixes decodes of early sequences with prefill chunks of later ones.
    struct seq_state {
      block_table table;
      size_t prefilled = 0;
      int64_t pos = 0;
      int32_t next = -1;
      std::vector<std::vector<float>> rows;
    };
    std::vector<seq_state> st(n_seq);
    std::vector<float> logits;
    for (int iter = 0; iter < 200; ++iter) {
      forward_batch b;
      std::vector<int> who;
      std::vector<int32_t> decode_tok(n_seq);
      for (int s = 0; s < n_seq; ++s) {
        auto& q = st[static_cast<size_t>(s)];
        if (iter < s || static_cast<int>(q.rows.size()) == steps + 1) continue;
        ASSERT_TRUE(q.table.reserve(e->blocks(), static_cast<int64_t>(prompts[s].size()) + steps, e->block_size()));
        if (q.prefilled < prompts[s].size()) {
          const size_t n = std::min<size_t>(5, prompts[s].size() - q.prefilled);
          const bool last = q.prefilled + n == prompts[s].size();
          b.seqs.push_back(seq_step{std::span<const int32_t>(prompts[s]).subspan(q.prefilled, n),
                                    static_cast<int64_t>(q.prefilled), q.table.blocks, last});
          q.prefilled += n;
          q.pos = static_cast<int64_t>(q.prefilled);
          if (last) who.push_back(s);
        } else {
          decode_tok[s] = q.next;
          b.seqs.push_back(seq_step{std::span<const int32_t>(&decode_tok[s], 1), q.pos, q.table.blocks, true});
          ++q.pos;
          who.push_back(s);
        }
      }
      if (b.seqs.empty()) break;
      logits.assign(static_cast<size_t>(b.n_logits() * V), 0.0f);
      ASSERT_TRUE(e->forward(b, logits));
      for (size_t k = 0; k < who.size(); ++k) {
        auto& q = st[static_cast<size_t>(who[k])];
        q.rows.emplace_back(logits.begin() + static_cast<int64_t>(k) * V, logits.begin() + static_cast<int64_t>(k + 1) * V);
        q.next = argmax(logits, k * V, static_cast<size_t>(V));
      }
    }
    for (int s = 0; s < n_seq; ++s) {
      ASSERT_EQ(st[s].rows.size(), alone[s].size()) << "sequence " << s;
      for (size_t r = 0; r < alone[s].size(); ++r)
        ASSERT_EQ(st[s].rows[r], alone[s][r]) << "threads " << threads << ", sequence " << s << ", step " << r
                                              << ": logits differ from running alone";
      st[s].table.release(e->blocks());
    }
  }
}

TEST(BatchInvariance, BlockOrderInTheTableDoesNotChangeResults) {
  auto e = load(2);
  ASSERT_TRUE(e);
  const int64_t V = e->hparams().n_vocab;
  std::vector<int32_t> prompt{1};
  for (int i = 0; i < 70; ++i) prompt.push_back(3 + (i * 37) % 500);
  auto run = [&](std::vector<int32_t> blocks) {
    std::vector<float> logits(static_cast<size_t>(V));
    forward_batch b;
    b.seqs.push_back(seq_step{prompt, 0, blocks, true});
    EXPECT_TRUE(e->forward(b, logits));
    return logits;
  };
  std::vector<int32_t> in_order(5), scattered{411, 7, 250, 3, 99};
  std::iota(in_order.begin(), in_order.end(), 0);
  const auto a = run(in_order), b = run(scattered);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f) << "logit " << i;
}

TEST(ForwardErrors, BadStepsFailCleanlyWithoutTouchingOtherState) {
  auto e = load(1);
  ASSERT_TRUE(e);
  const auto& hp = e->hparams();
  std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
  std::vector<int32_t> blocks{0, 1};
  const int32_t bad_token = static_cast<int32_t>(hp.n_vocab);
  forward_batch b;
  b.seqs.push_back(seq_step{std::span<const int32_t>(&bad_token, 1), 0, blocks, true});
  auto st = e->forward(b, logits);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::invalid_argument);

  const int32_t ok_token = 5;
  forward_batch past_ctx;
  std::vector<int32_t> many(static_cast<size_t>(hp.context_length / e->block_size() + 1));
  std::iota(many.begin(), many.end(), 0);
  past_ctx.seqs.push_back(seq_step{std::span<const int32_t>(&ok_token, 1), hp.context_length, many, true});
  st = e->forward(past_ctx, logits);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::context_overflow);

  forward_batch short_table;
  short_table.seqs.push_back(seq_step{std::span<const int32_t>(&ok_token, 1), 40, blocks, true});
  st = e->forward(short_table, logits);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

TEST(RopeFrequencies, Llama3ScalingKeepsHighFrequenciesAndDividesLowOnes) {
  model_hparams hp;
  hp.head_dim = 128;
  hp.rope_theta = 500000.0f;
  const auto plain = rope_inv_freq(hp);
  hp.scaling.llama3 = true;
  hp.scaling.factor = 8.0f;
  hp.scaling.low_freq_factor = 1.0f;
  hp.scaling.high_freq_factor = 4.0f;
  hp.scaling.original_context = 8192;
  const auto scaled = rope_inv_freq(hp);
  ASSERT_EQ(plain.size(), 64u);
  EXPECT_FLOAT_EQ(scaled[0], plain[0]);             // wavelength 2*pi: far above the high band
  EXPECT_FLOAT_EQ(scaled[63], plain[63] / 8.0f);    // longest wavelength: divided by the factor
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_LE(scaled[i], plain[i] * 1.000001f);
    EXPECT_GE(scaled[i], plain[i] / 8.0f * 0.999999f);
  }
}

}  // namespace
}  // namespace troupe
