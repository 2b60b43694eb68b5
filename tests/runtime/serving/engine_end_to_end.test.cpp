// The scheduler driving the real model: 16 concurrent greedy requests through a KV cache too small
// for all of them (so sequences are preempted and recomputed, and prefixes come from the cache)
// give exactly the tokens the engine's single-sequence generate gives for each prompt.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "runtime/engine/engine.hpp"
#include "runtime/serving/scheduler_policy.hpp"

namespace troupe {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

/// A one-process shard: the engine's model and KV pool, one sampler per sequence.
class engine_shard {
 public:
  explicit engine_shard(engine& e) : e_(e) {}

  step_result run(const step_plan& plan) {
    step_result r;
    r.step = plan.step;
    for (request_id id : plan.released) samplers_.erase(id);
    EXPECT_TRUE(plan.copies.empty());  // no forks in this test
    forward_batch batch;
    for (const auto& sp : plan.seqs) {
      if (sp.new_sequence) samplers_.emplace(sp.id, sampler(sp.params, sp.prompt));
      batch.seqs.push_back(seq_step{sp.tokens, sp.start_pos, sp.block_table, sp.sample});
    }
    const auto V = static_cast<size_t>(e_.hparams().n_vocab);
    logits_.assign(V * static_cast<size_t>(batch.n_logits()), 0.0f);
    if (auto st = e_.forward(batch, logits_); !st) {
      r.error = st.error().what();
      return r;
    }
    size_t k = 0;
    for (const auto& sp : plan.seqs) {
      if (!sp.sample) continue;
      auto it = samplers_.find(sp.id);
      EXPECT_NE(it, samplers_.end());
      seq_output out;
      out.id = sp.id;
      out.sample = it->second.sample(std::span<float>(logits_.data() + k * V, V));
      r.outputs.push_back(std::move(out));
      ++k;
    }
    return r;
  }

  size_t live() const { return samplers_.size(); }

 private:
  engine& e_;
  std::map<request_id, sampler> samplers_;
  std::vector<float> logits_;
};

TEST(SchedulerEndToEnd, SixteenConcurrentGreedyRequestsMatchSingleSequenceGenerate) {
  engine_options opts;
  opts.model_path = shared_dir + "/models/stories260K/stories260K.gguf";
  opts.model.threads = 1;
  opts.kv.n_blocks = 24;  // 384 positions for 16 sequences of up to ~100: preemption is certain
  auto loaded = engine::load(opts);
  ASSERT_TRUE(loaded) << loaded.error().what();
  engine& e = **loaded;
  const tokenizer& tok = e.tok();

  const char* starts[] = {"Once upon a time", "The little dog", "Lily wanted to", "One day, a bird",
                          "Tom and his mom", "The sun was", "A big red ball", "She saw a cat"};
  const std::string shared = "Once upon a time, there was a little girl named Lily. She loved to play outside. ";
  std::vector<std::vector<int32_t>> prompts;
  for (const char* s : starts) prompts.push_back(tok.encode_prompt(s));
  for (const char* s : starts) prompts.push_back(tok.encode_prompt(shared + s));  // share full blocks
  ASSERT_EQ(prompts.size(), 16u);

  sampling_params greedy;
  greedy.temperature = 0.0f;
  const int max_tokens = 48;
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) {
    auto g = e.generate(p, greedy, max_tokens);
    ASSERT_TRUE(g) << g.error().what();
    expected.push_back(g->tokens);
  }
  ASSERT_EQ(e.blocks().n_free(), e.n_blocks());

  scheduler_config sc;
  sc.max_num_seqs = 16;
  sc.max_num_batched_tokens = 64;
  sc.max_model_len = e.hparams().context_length;
  scheduler_policy policy(sc, {e.block_size(), e.n_blocks(), true}, &tok);
  for (size_t i = 0; i < prompts.size(); ++i) {
    serving_request r;
    r.id = 100 + i;
    r.prompt = prompts[i];
    r.params = greedy;
    r.max_tokens = max_tokens;
    ASSERT_FALSE(policy.add(std::move(r)));
  }
  engine_shard shard(e);
  std::map<request_id, std::vector<int32_t>> got;
  std::map<request_id, std::string> text;
  std::map<request_id, finish_kind> finish;
  int steps = 0;
  while (policy.has_work() && steps < 5000) {
    step_plan plan = policy.schedule();
    ASSERT_FALSE(plan.seqs.empty());
    for (const auto& ev : policy.update(plan, shard.run(plan))) {
      ASSERT_NE(ev.finish, finish_kind::error) << ev.error;
      if (ev.token >= 0 && !ev.token_is_stop) got[ev.id].push_back(ev.token);
      text[ev.id] += ev.text;
      if (ev.finish != finish_kind::none) finish[ev.id] = ev.finish;
    }
    ++steps;
  }
  ASSERT_FALSE(policy.has_work());
  const auto st = policy.stats();
  EXPECT_GT(st.preemptions, 0);
  EXPECT_GT(st.kv.prefix_hit_tokens, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const request_id id = 100 + i;
    EXPECT_EQ(got[id], expected[i]) << "request " << i;
    std::string want;
    for (int32_t t : expected[i]) want += tok.decode_bytes(t);
    EXPECT_EQ(text[id], want) << "request " << i;
    EXPECT_NE(finish[id], finish_kind::none);
  }
  (void)policy.schedule();  // delivers the last releases
  std::printf("end-to-end: %d steps, %ld preemptions, %ld prefix-hit tokens\n", steps,
              static_cast<long>(st.preemptions), static_cast<long>(st.kv.prefix_hit_tokens));
}

}  // namespace
}  // namespace troupe
