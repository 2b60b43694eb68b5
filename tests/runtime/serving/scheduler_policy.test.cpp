#include "runtime/serving/scheduler_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "tests/runtime/serving/fake_shard.hpp"

namespace troupe {
namespace {

using testing::drive;
using testing::fake_shard;
using testing::stream;

std::vector<int32_t> prompt_of(int n, int32_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<size_t>(i)] = 300 + (seed * 31 + i * 7) % 150;
  return p;
}

serving_request request(request_id id, std::vector<int32_t> prompt, int max_tokens, int priority = 0) {
  serving_request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.priority = priority;
  r.params.temperature = 0.0f;
  return r;
}

scheduler_config sched(int64_t max_seqs, int64_t budget, int64_t max_len = 4096) {
  scheduler_config c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = max_len;
  return c;
}

/// Each request run alone with a roomy cache: the reference tokens.
std::vector<int32_t> alone(const serving_request& r, int block_size = 4) {
  scheduler_policy p(sched(1, 512), {block_size, 256, false}, nullptr);
  fake_shard shard(block_size, 256);
  EXPECT_FALSE(p.add(r));
  auto out = drive(p, shard);
  return out[r.id].tokens;
}

TEST(SchedulerPolicy, RespectsTokenBudgetAndMaxNumSeqs) {
  scheduler_policy p(sched(3, 20), {4, 128, true}, nullptr);
  fake_shard shard(4, 128);
  for (request_id id = 1; id <= 6; ++id) ASSERT_FALSE(p.add(request(id, prompt_of(30, static_cast<int>(id)), 5)));
  int max_seqs_seen = 0;
  auto out = drive(p, shard, [&](const step_plan& plan) {
    int64_t n = 0;
    for (const auto& s : plan.seqs) n += static_cast<int64_t>(s.tokens.size());
    EXPECT_LE(n, 20);
    EXPECT_LE(plan.seqs.size(), 3u);
    EXPECT_LE(p.stats().running, 3);
    max_seqs_seen = std::max(max_seqs_seen, static_cast<int>(plan.seqs.size()));
  });
  EXPECT_EQ(max_seqs_seen, 3);
  ASSERT_EQ(out.size(), 6u);
  for (auto& [id, s] : out) {
    EXPECT_EQ(s.finish, finish_kind::length);
    EXPECT_EQ(s.tokens, alone(request(id, prompt_of(30, static_cast<int>(id)), 5)));
  }
}

TEST(SchedulerPolicy, AdmitsByPriorityThenArrival) {
  scheduler_policy p(sched(1, 64), {4, 64, true}, nullptr);
  fake_shard shard(4, 64);
  const int prio[] = {2, 0, 1, 0, 1};
  for (request_id id = 0; id < 5; ++id) ASSERT_FALSE(p.add(request(id, prompt_of(5, static_cast<int>(id)), 2, prio[id])));
  std::vector<request_id> order;
  drive(p, shard, [&](const step_plan& plan) {
    for (const auto& s : plan.seqs)
      if (std::find(order.begin(), order.end(), s.id) == order.end()) order.push_back(s.id);
  });
  EXPECT_EQ(order, (std::vector<request_id>{1, 3, 2, 4, 0}));
}

TEST(SchedulerPolicy, ChunkedPrefillInterleavesWithDecodes) {
  scheduler_policy p(sched(8, 16), {4, 128, true}, nullptr);
  fake_shard shard(4, 128);
  ASSERT_FALSE(p.add(request(1, prompt_of(4, 1), 40)));
  std::map<request_id, stream> out;
  for (int i = 0; i < 3; ++i) {  // 1 is decoding
    auto plan = p.schedule();
    testing::collect(out, p.update(plan, shard.run(plan)));
  }
  ASSERT_FALSE(p.add(request(2, prompt_of(100, 2), 3)));
  int prefill_steps = 0;
  while (true) {
    auto plan = p.schedule();
    const seq_plan* a = nullptr;
    const seq_plan* b = nullptr;
    for (const auto& s : plan.seqs) (s.id == 1 ? a : b) = &s;
    ASSERT_NE(a, nullptr) << "the decode was starved";
    EXPECT_EQ(a->tokens.size(), 1u);
    EXPECT_EQ(&plan.seqs.front(), a);  // decodes first
    ASSERT_NE(b, nullptr);
    EXPECT_LE(b->tokens.size(), 15u);
    ++prefill_steps;
    const bool last = b->sample;
    testing::collect(out, p.update(plan, shard.run(plan)));
    if (last) break;
  }
  EXPECT_EQ(prefill_steps, 7);  // 100 tokens at 15 a step
  EXPECT_GE(out[1].tokens.size(), 9u);
  EXPECT_EQ(out[2].tokens.size(), 1u);
}

TEST(SchedulerPolicy, WithoutChunkingAPromptRunsWhole) {
  scheduler_config c = sched(8, 16);
  c.enable_chunked_prefill = false;
  scheduler_policy p(c, {4, 128, true}, nullptr);
  fake_shard shard(4, 128);
  ASSERT_FALSE(p.add(request(1, prompt_of(10, 1), 3)));
  ASSERT_FALSE(p.add(request(2, prompt_of(10, 2), 3)));
  auto plan = p.schedule();
  ASSERT_EQ(plan.seqs.size(), 1u);  // the second does not fit the rest of the budget
  EXPECT_EQ(plan.seqs[0].tokens.size(), 10u);
  EXPECT_TRUE(plan.seqs[0].sample);
}

TEST(SchedulerPolicy, PreemptsNewestWhenBlocksRunOutAndRecomputesSameTokens) {
  // 6 blocks of 4: three requests of 6 + 10 tokens need 12 blocks at their longest.
  scheduler_policy p(sched(8, 64), {4, 6, true}, nullptr);
  fake_shard shard(4, 6);
  std::vector<serving_request> reqs;
  for (request_id id = 1; id <= 3; ++id) reqs.push_back(request(id, prompt_of(6, static_cast<int>(id)), 10));
  for (const auto& r : reqs) ASSERT_FALSE(p.add(r));
  auto out = drive(p, shard);
  EXPECT_GT(p.stats().preemptions, 0);
  for (const auto& r : reqs) {
    EXPECT_EQ(out[r.id].finish, finish_kind::length);
    EXPECT_EQ(out[r.id].tokens, alone(r)) << "request " << r.id;
    EXPECT_EQ(out[r.id].usage.completion_tokens, 10);
  }
  EXPECT_EQ(p.blocks().stats().blocks_used, 0);
}

TEST(SchedulerPolicy, PreemptionVictimIsTheNewest) {
  scheduler_policy p(sched(8, 64), {4, 4, false}, nullptr);
  fake_shard shard(4, 4);
  ASSERT_FALSE(p.add(request(1, prompt_of(7, 1), 8)));
  ASSERT_FALSE(p.add(request(2, prompt_of(7, 2), 8)));
  // Both hold 2 blocks after the prefill; the decode at position 8 needs a fifth block.
  std::vector<std::set<request_id>> steps;
  for (int i = 0; i < 3; ++i) {
    auto plan = p.schedule();
    std::set<request_id> ids;
    for (const auto& s : plan.seqs) ids.insert(s.id);
    steps.push_back(ids);
    (void)p.update(plan, shard.run(plan));
  }
  EXPECT_EQ(steps[0], (std::set<request_id>{1, 2}));
  EXPECT_EQ(steps[1], (std::set<request_id>{1, 2}));
  EXPECT_EQ(steps[2], (std::set<request_id>{1}));  // 2 gave its blocks to 1
  EXPECT_EQ(p.stats().preemptions, 1);
  EXPECT_EQ(p.stats().waiting, 1);
}

TEST(SchedulerPolicy, RejectsRequestsThatCanNeverFit) {
  scheduler_policy p(sched(8, 64, 32), {4, 16, true}, nullptr);
  auto ev = p.add(request(1, prompt_of(32, 1), 4));
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->finish, finish_kind::error);
  EXPECT_NE(ev->error.find("context_overflow"), std::string::npos) << ev->error;
  EXPECT_NE(ev->error.find("max_model_len is 32"), std::string::npos) << ev->error;

  scheduler_policy q(sched(8, 64, 4096), {4, 4, true}, nullptr);  // the cache holds 16 tokens
  ev = q.add(request(2, prompt_of(20, 1), 4));
  ASSERT_TRUE(ev);
  EXPECT_NE(ev->error.find("no_kv_blocks"), std::string::npos) << ev->error;
  EXPECT_FALSE(q.has_work());

  EXPECT_TRUE(q.add(request(3, {}, 4)));
  EXPECT_FALSE(q.add(request(4, prompt_of(3, 1), 4)));
  EXPECT_TRUE(q.add(request(4, prompt_of(3, 1), 4)));  // duplicate id
  auto bad = request(5, prompt_of(3, 1), 4);
  bad.stop = {"x"};  // no tokenizer
  EXPECT_TRUE(q.add(bad));
}

TEST(SchedulerPolicy, LengthLimitOfTheContextEndsWithLength) {
  scheduler_policy p(sched(8, 64, 12), {4, 16, true}, nullptr);
  fake_shard shard(4, 16);
  ASSERT_FALSE(p.add(request(1, prompt_of(8, 1), 100)));
  auto out = drive(p, shard);
  EXPECT_EQ(out[1].finish, finish_kind::length);
  EXPECT_EQ(out[1].tokens.size(), 4u);
}

TEST(SchedulerPolicy, MaxTokensFreesBlocksAtOnce) {
  scheduler_policy p(sched(8, 64), {4, 16, false}, nullptr);
  fake_shard shard(4, 16);
  ASSERT_FALSE(p.add(request(1, prompt_of(6, 1), 2)));
  std::map<request_id, stream> out;
  auto plan = p.schedule();
  testing::collect(out, p.update(plan, shard.run(plan)));
  EXPECT_GT(p.blocks().stats().blocks_used, 0);
  plan = p.schedule();
  auto events = p.update(plan, shard.run(plan));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish, finish_kind::length);
  EXPECT_EQ(p.blocks().stats().blocks_used, 0);  // right after the finishing update
  EXPECT_FALSE(p.has_work());
  EXPECT_EQ(p.schedule().released, (std::vector<request_id>{1}));
}

TEST(SchedulerPolicy, StopTokenEndsWithStopAndIsNotOutput) {
  scheduler_policy p(sched(8, 64), {4, 16, false}, nullptr);
  fake_shard shard(4, 16);
  auto r = request(1, prompt_of(6, 1), 50);
  r.params.stop_token_ids = {7};
  shard.script(1, {20, 21, 7, 22});
  ASSERT_FALSE(p.add(r));
  std::map<request_id, stream> out;
  for (int i = 0; i < 3; ++i) {
    auto plan = p.schedule();
    testing::collect(out, p.update(plan, shard.run(plan)));
  }
  EXPECT_EQ(out[1].finish, finish_kind::stop);
  EXPECT_EQ(out[1].tokens, (std::vector<int32_t>{20, 21}));
  EXPECT_EQ(out[1].usage.completion_tokens, 3);
  EXPECT_EQ(p.blocks().stats().blocks_used, 0);
  EXPECT_FALSE(p.has_work());
}

TEST(SchedulerPolicy, CancelFreesBlocksAndReleasesTheSampler) {
  scheduler_policy p(sched(8, 64), {4, 16, false}, nullptr);
  fake_shard shard(4, 16);
  ASSERT_FALSE(p.add(request(1, prompt_of(6, 1), 50)));
  ASSERT_FALSE(p.add(request(2, prompt_of(6, 2), 50)));
  auto plan = p.schedule();
  (void)p.update(plan, shard.run(plan));
  const int64_t used = p.blocks().stats().blocks_used;
  auto ev = p.cancel(1);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->finish, finish_kind::cancelled);
  EXPECT_EQ(ev->usage.completion_tokens, 1);
  EXPECT_EQ(p.blocks().stats().blocks_used, used - 2);
  EXPECT_FALSE(p.cancel(1));
  plan = p.schedule();
  EXPECT_EQ(plan.released, (std::vector<request_id>{1}));
  ASSERT_EQ(plan.seqs.size(), 1u);
  EXPECT_EQ(plan.seqs[0].id, 2u);
  // Cancelled while its step ran: the result for it is dropped.
  ev = p.cancel(2);
  ASSERT_TRUE(ev);
  EXPECT_TRUE(p.update(plan, shard.run(plan)).empty());
  EXPECT_EQ(p.blocks().stats().blocks_used, 0);
  // A waiting request never reached a shard: nothing to release.
  ASSERT_FALSE(p.add(request(3, prompt_of(6, 3), 50)));
  ASSERT_TRUE(p.cancel(3));
  EXPECT_EQ(p.schedule().released, (std::vector<request_id>{2}));
}

TEST(SchedulerPolicy, UsageCountsCachedPromptTokens) {
  scheduler_policy p(sched(8, 64), {16, 32, true}, nullptr);
  fake_shard shard(16, 32);
  auto shared = prompt_of(40, 1);
  auto a = shared, b = shared;
  a.push_back(1);
  b.push_back(2);
  b.push_back(3);
  ASSERT_FALSE(p.add(request(1, a, 3)));
  auto out = drive(p, shard);
  ASSERT_FALSE(p.add(request(2, b, 3)));
  auto out2 = drive(p, shard);
  EXPECT_EQ(out[1].usage.prompt_tokens, 41);
  EXPECT_EQ(out[1].usage.cached_prompt_tokens, 0);
  EXPECT_EQ(out[1].usage.completion_tokens, 3);
  EXPECT_EQ(out2[2].usage.prompt_tokens, 42);
  EXPECT_EQ(out2[2].usage.cached_prompt_tokens, 32);
  EXPECT_EQ(out2[2].tokens, alone(request(2, b, 3), 16));  // the cached KV is the right one
  EXPECT_EQ(p.blocks().stats().prefix_hit_tokens, 32);
}

TEST(SchedulerPolicy, StepErrorEndsOnlyThatStepsSequences) {
  scheduler_policy p(sched(1, 64), {4, 16, false}, nullptr);
  fake_shard shard(4, 16);
  ASSERT_FALSE(p.add(request(1, prompt_of(6, 1), 5)));
  ASSERT_FALSE(p.add(request(2, prompt_of(6, 2), 5)));
  auto plan = p.schedule();
  ASSERT_EQ(plan.seqs.size(), 1u);
  step_result bad = shard.run(plan);  // the shard created the sequence, then the step failed
  bad.outputs.clear();
  bad.error = "device lost";
  auto events = p.update(plan, bad);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish, finish_kind::error);
  EXPECT_NE(events[0].error.find("device lost"), std::string::npos);
  auto out = drive(p, shard);
  EXPECT_EQ(out[2].finish, finish_kind::length);
}

}  // namespace
}  // namespace troupe
