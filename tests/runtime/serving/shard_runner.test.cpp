// shard_runner without actors: plans in, sampled tokens out, equal to engine::generate; invalid
// plans fail whole and leave the shard serving; releases drop samplers; block copies make forks.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/engine/engine.hpp"
#include "runtime/serving/shard_runner.hpp"

namespace troupe {
namespace {

const std::string model_path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

engine_options options() {
  engine_options opts;
  opts.model_path = model_path;
  opts.model.threads = 1;
  opts.kv.n_blocks = 64;
  return opts;
}

std::unique_ptr<shard_runner> load_runner() {
  auto r = shard_runner::load(options());
  EXPECT_TRUE(r) << r.error().what();
  return r ? std::move(*r) : nullptr;
}

sampling_params greedy() {
  sampling_params p;
  p.temperature = 0.0f;
  return p;
}

/// Greedy tokens that engine::generate gives for prompt (it stops early at the model's EOS).
std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int n) {
  auto e = engine::load(options());
  EXPECT_TRUE(e) << e.error().what();
  auto g = (*e)->generate(prompt, greedy(), n);
  EXPECT_TRUE(g) << g.error().what();
  return g->tokens;
}

std::vector<int32_t> prompt_of(const std::string& text) {
  auto e = engine::load(options());
  EXPECT_TRUE(e);
  return (*e)->tok().encode_prompt(text);
}

seq_plan prefill(request_id id, std::vector<int32_t> tokens, std::vector<int32_t> blocks) {
  seq_plan s;
  s.id = id;
  s.prompt = tokens;
  s.tokens = std::move(tokens);
  s.block_table = std::move(blocks);
  s.sample = true;
  s.new_sequence = true;
  s.params = greedy();
  return s;
}

seq_plan decode(request_id id, int32_t token, int64_t pos, std::vector<int32_t> blocks) {
  seq_plan s;
  s.id = id;
  s.tokens = {token};
  s.start_pos = pos;
  s.block_table = std::move(blocks);
  s.sample = true;
  return s;
}

TEST(ShardRunner, PrefillThenDecodeMatchesEngineGenerate) {
  auto r = load_runner();
  ASSERT_TRUE(r);
  const auto pa = prompt_of("Once upon a time, there was a little dog");
  const auto pb = prompt_of("Lily liked to play");
  const auto ra = reference(pa, 6), rb = reference(pb, 6);
  ASSERT_EQ(ra.size(), 6u);
  ASSERT_EQ(rb.size(), 6u);

  const std::vector<int32_t> ta{0, 1, 2}, tb{5, 4, 3};
  step_plan p;
  p.step = 1;
  p.seqs = {prefill(10, pa, ta), prefill(11, pb, tb)};
  std::vector<int32_t> got_a, got_b;
  for (int i = 0; i < 6; ++i) {
    step_result res = r->run(p);
    ASSERT_TRUE(res.error.empty()) << res.error;
    ASSERT_EQ(res.step, p.step);
    ASSERT_EQ(res.outputs.size(), 2u);
    EXPECT_EQ(res.outputs[0].id, 10u);
    EXPECT_EQ(res.outputs[1].id, 11u);
    got_a.push_back(res.outputs[0].sample.token);
    got_b.push_back(res.outputs[1].sample.token);
    const int64_t pos_a = static_cast<int64_t>(pa.size()) + i, pos_b = static_cast<int64_t>(pb.size()) + i;
    p.step++;
    p.seqs = {decode(10, got_a.back(), pos_a, ta), decode(11, got_b.back(), pos_b, tb)};
  }
  EXPECT_EQ(got_a, ra);
  EXPECT_EQ(got_b, rb);
  EXPECT_EQ(r->n_sequences(), 2u);
}

TEST(ShardRunner, InvalidPlansFailWholeAndTheShardKeepsServing) {
  auto r = load_runner();
  ASSERT_TRUE(r);
  const shard_info info = r->info();
  EXPECT_EQ(info.n_blocks, 64);
  EXPECT_EQ(info.block_size, 16);
  EXPECT_GT(info.n_vocab, 0);
  const auto prompt = prompt_of("Once upon a time");
  const auto ref = reference(prompt, 2);
  ASSERT_EQ(ref.size(), 2u);

  auto fails = [&](step_plan p, const std::string& why) {
    const size_t before = r->n_sequences();
    step_result res = r->run(p);
    EXPECT_FALSE(res.error.empty()) << why;
    EXPECT_TRUE(res.outputs.empty()) << why;
    EXPECT_EQ(r->n_sequences(), before) << why << ": a failed plan must not create samplers";
    return res.error;
  };
  const step_plan p{1, {}, {prefill(1, prompt, {0})}, {}};

  step_plan bad = p;
  bad.seqs[0].tokens[1] = info.n_vocab;
  EXPECT_NE(fails(bad, "token id").find("token id"), std::string::npos);
  bad = p;
  bad.seqs[0].block_table = {static_cast<int32_t>(info.n_blocks)};
  EXPECT_NE(fails(bad, "block id").find("block id"), std::string::npos);
  bad = p;
  bad.seqs[0].block_table = {};
  fails(bad, "table too short");
  bad = p;
  bad.seqs.push_back(p.seqs[0]);
  fails(bad, "duplicate id");
  bad = p;
  bad.seqs[0].params.temperature = -1.0f;
  fails(bad, "bad sampling params");
  bad = p;
  bad.seqs[0].tokens.clear();
  fails(bad, "no tokens");
  bad = p;
  bad.seqs[0].start_pos = info.context_length;
  bad.seqs[0].block_table.assign(static_cast<size_t>(info.n_blocks), 0);
  fails(bad, "past the context");
  bad = p;
  bad.copies = {{0, static_cast<int32_t>(info.n_blocks)}};
  fails(bad, "copy out of range");
  bad = p;
  bad.seqs.push_back(decode(99, 1, 0, {1}));
  fails(bad, "unknown sequence");

  step_result res = r->run(p);
  ASSERT_TRUE(res.error.empty()) << res.error;
  ASSERT_EQ(res.outputs.size(), 1u);
  EXPECT_EQ(res.outputs[0].sample.token, ref[0]);
  bad = p;  // the same id again as new while it runs
  fails(bad, "new_sequence twice");
  res = r->run(step_plan{2, {}, {decode(1, ref[0], static_cast<int64_t>(prompt.size()), {0})}, {}});
  ASSERT_TRUE(res.error.empty()) << res.error;
  EXPECT_EQ(res.outputs[0].sample.token, ref[1]);
}

TEST(ShardRunner, ReleasedSequencesAreDroppedAndTheirIdsCanStartAgain) {
  auto r = load_runner();
  ASSERT_TRUE(r);
  const auto prompt = prompt_of("The sun was hot");
  const auto ref = reference(prompt, 1);
  step_result res = r->run(step_plan{1, {}, {prefill(7, prompt, {3})}, {}});
  ASSERT_TRUE(res.error.empty()) << res.error;
  EXPECT_EQ(r->n_sequences(), 1u);
  // Released: a later decode for it is refused; releasing an unknown id is harmless.
  res = r->run(step_plan{2, {}, {}, {7, 12345}});
  EXPECT_TRUE(res.error.empty()) << res.error;
  EXPECT_EQ(r->n_sequences(), 0u);
  res = r->run(step_plan{3, {}, {decode(7, 1, static_cast<int64_t>(prompt.size()), {3})}, {}});
  EXPECT_FALSE(res.error.empty());
  // Release and restart in one plan (recompute after preemption).
  res = r->run(step_plan{4, {}, {prefill(7, prompt, {4})}, {}});
  ASSERT_TRUE(res.error.empty()) << res.error;
  res = r->run(step_plan{5, {}, {prefill(7, prompt, {5})}, {7}});
  ASSERT_TRUE(res.error.empty()) << res.error;
  ASSERT_EQ(res.outputs.size(), 1u);
  EXPECT_EQ(res.outputs[0].sample.token, ref[0]);
  EXPECT_EQ(r->n_sequences(), 1u);
}

TEST(ShardRunner, BlockCopiesLetAForkedSequenceShareItsParentsPrefix) {
  auto r = load_runner();
  ASSERT_TRUE(r);
  std::vector<int32_t> prompt = prompt_of("Once upon a time, there was a little girl named Lily. She");
  ASSERT_GT(prompt.size(), 16u);  // the prompt ends inside the second block
  ASSERT_LT(prompt.size(), 32u);
  const auto ref = reference(prompt, 3);
  ASSERT_EQ(ref.size(), 3u);
  const int64_t n = static_cast<int64_t>(prompt.size());

  // Log-probabilities make the check sharp: parent and child must see bit-identical logits.
  seq_plan parent = prefill(1, prompt, {8, 9});
  parent.params.logprobs = 5;
  step_result res = r->run(step_plan{1, {}, {parent}, {}});
  ASSERT_TRUE(res.error.empty()) << res.error;
  ASSERT_EQ(res.outputs[0].sample.token, ref[0]);
  // Fork: sequence 2 shares block 8 and gets a private copy of the partly filled block 9.
  seq_plan child = decode(2, ref[0], n, {8, 10});
  child.new_sequence = true;
  child.params = parent.params;
  child.prompt = prompt;
  auto expect_twins = [&](const step_result& res, int32_t token) {
    ASSERT_TRUE(res.error.empty()) << res.error;
    ASSERT_EQ(res.outputs.size(), 2u);
    const sample_result &a = res.outputs[0].sample, &b = res.outputs[1].sample;
    EXPECT_EQ(a.token, token);
    EXPECT_EQ(b.token, token);
    EXPECT_EQ(a.logprob, b.logprob);
    ASSERT_EQ(a.top.size(), 5u);
    ASSERT_EQ(b.top.size(), 5u);
    for (size_t i = 0; i < a.top.size(); ++i) {
      EXPECT_EQ(a.top[i].id, b.top[i].id);
      EXPECT_EQ(a.top[i].logprob, b.top[i].logprob);
    }
  };
  expect_twins(r->run(step_plan{2, {{9, 10}}, {decode(1, ref[0], n, {8, 9}), child}, {}}), ref[1]);
  // Still twins a step later, each now writing its own copy of the second block.
  expect_twins(r->run(step_plan{3, {}, {decode(1, ref[1], n + 1, {8, 9}), decode(2, ref[1], n + 1, {8, 10})}, {}}),
               ref[2]);
}

}  // namespace
}  // namespace troupe
