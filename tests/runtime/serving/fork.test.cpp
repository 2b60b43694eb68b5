// Parallel sampling (n > 1) through copy-on-write forks in scheduler_policy: a request with fork_of
// shares its parent's prompt KV and computes only the last prompt token; what every choice
// generates is what the same request gives alone; cancel and preemption of a parent or a child keep
// the reference counts right (every block is free again at the end). The fake shard checks block
// tables and copies (a wrong one changes the tokens); the last test runs the real model.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/serving/scheduler_policy.hpp"
#include "runtime/serving/shard_runner.hpp"
#include "tests/runtime/serving/fake_shard.hpp"

namespace troupe {
namespace {

using testing::collect;
using testing::drive;
using testing::fake_shard;
using testing::stream;

constexpr int block_size = 4;

std::vector<int32_t> prompt_of(int n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<size_t>(i)] = 300 + (i * 7) % 150;
  return p;
}

scheduler_config sched(int64_t max_seqs, int64_t budget) {
  scheduler_config c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = 4096;
  return c;
}

/// n choices of one prompt: ids first, first + 1, ...; the others fork from the first when `fork`.
std::vector<serving_request> choices(request_id first, const std::vector<int32_t>& prompt, int n, int max_tokens,
                                     bool fork) {
  std::vector<serving_request> out;
  for (int j = 0; j < n; ++j) {
    serving_request r;
    r.id = first + static_cast<request_id>(j);
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.params.temperature = 0.0f;
    if (fork && j > 0) r.fork_of = first;
    out.push_back(std::move(r));
  }
  return out;
}

/// Each choice gets its own first tokens (as seeded sampling would), then the shard's hash of
/// everything it reads through the block table takes over.
void script_choices(fake_shard& shard, request_id first, int n) {
  for (int j = 0; j < n; ++j) shard.script(first + static_cast<request_id>(j), {20 + j, 40 + j});
}

/// A choice run alone with a roomy cache: the reference tokens.
std::vector<int32_t> alone(serving_request r, int n_choices) {
  r.fork_of = 0;
  scheduler_policy p(sched(1, 512), {block_size, 256, false}, nullptr);
  fake_shard shard(block_size, 256);
  script_choices(shard, 100, n_choices);  // the same scripts as in the forked run
  const request_id id = r.id;
  EXPECT_FALSE(p.add(std::move(r)));
  return drive(p, shard)[id].tokens;
}

/// Prompt tokens the shards computed (positions below the prompt's length), summed over the plans.
struct prompt_counter {
  int64_t n_prompt = 0;
  int64_t computed = 0;
  int64_t copies = 0;
  void operator()(const step_plan& plan) {
    copies += static_cast<int64_t>(plan.copies.size());
    for (const auto& sp : plan.seqs)
      for (int64_t pos = sp.start_pos; pos < sp.start_pos + static_cast<int64_t>(sp.tokens.size()); ++pos)
        computed += pos < n_prompt ? 1 : 0;
  }
};

void expect_all_free(const scheduler_policy& p) {
  const auto st = p.stats().kv;
  EXPECT_EQ(st.blocks_used, 0);
  EXPECT_EQ(st.blocks_free, st.blocks_total);
}

TEST(KvBlockManagerFork, APrefixForkSharesOnlyTheBlocksCoveringItsPositions) {
  kv_block_manager m({block_size, 16, false});
  std::vector<block_copy> copies;
  ASSERT_TRUE(m.allocate(1, prompt_of(10), 10));  // 3 blocks
  ASSERT_TRUE(m.append_slots(1, 10, 14, copies));  // 4 blocks: the parent decoded on
  ASSERT_TRUE(m.fork(1, 2, 9));
  ASSERT_EQ(m.table(2).size(), 3u);
  for (size_t b = 0; b < 4; ++b) EXPECT_EQ(m.ref_count(m.table(1)[b]), b < 3 ? 2 : 1) << b;
  EXPECT_FALSE(m.fork(1, 3, 17));  // more positions than the parent holds
  EXPECT_FALSE(m.has(3));
  // The child writes position 9 in the shared third block: it gets its own copy first.
  ASSERT_TRUE(m.append_slots(2, 9, 10, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, m.table(1)[2]);
  EXPECT_EQ(copies[0].dst, m.table(2)[2]);
  EXPECT_EQ(m.ref_count(m.table(1)[2]), 1);
  m.free(1);
  m.free(2);
  EXPECT_EQ(m.n_free(), 16);
}

struct fork_case {
  int prompt_len;        ///< 30: the last shared block is partial (copied); 29: it ends a block
  bool prefix_caching;
};

class ForkChoices : public ::testing::TestWithParam<fork_case> {};

TEST_P(ForkChoices, PromptComputedOnceAndEveryChoiceMatchesItsRequestAlone) {
  const auto [len, caching] = GetParam();
  const int n = 4;
  const auto prompt = prompt_of(len);
  scheduler_policy p(sched(8, 64), {block_size, 64, caching}, nullptr);
  fake_shard shard(block_size, 64);
  script_choices(shard, 100, n);
  for (auto& r : choices(100, prompt, n, 12, true)) ASSERT_FALSE(p.add(std::move(r)));
  prompt_counter count{len};
  auto out = drive(p, shard, std::ref(count));

  EXPECT_EQ(count.computed, len + (n - 1));  // the parent's whole prompt, one last token per child
  // A partial last prompt block is written by every child: each takes its own copy first.
  EXPECT_EQ(count.copies, (len - 1) % block_size != 0 ? n - 1 : 0);
  std::set<std::vector<int32_t>> distinct;
  for (const auto& r : choices(100, prompt, n, 12, true)) {
    EXPECT_EQ(out[r.id].tokens, alone(r, n)) << "choice " << r.id;
    EXPECT_EQ(out[r.id].finish, finish_kind::length);
    EXPECT_EQ(out[r.id].usage.prompt_tokens, len);
    EXPECT_EQ(out[r.id].usage.cached_prompt_tokens, r.id == 100 ? 0 : len - 1);
    distinct.insert(out[r.id].tokens);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(n));  // the scripts made them differ: no KV leaked across
  expect_all_free(p);
}

INSTANTIATE_TEST_SUITE_P(PartialOrFullLastBlock, ForkChoices,
                         ::testing::Values(fork_case{30, false}, fork_case{30, true}, fork_case{29, false},
                                           fork_case{29, true}),
                         [](const ::testing::TestParamInfo<fork_case>& i) {
                           return "Prompt" + std::to_string(i.param.prompt_len) +
                                  (i.param.prefix_caching ? "PrefixCaching" : "NoPrefixCaching");
                         });

TEST(SchedulerFork, TwoHundredTokenPromptWithFourChoicesComputes203PromptTokensInsteadOf800) {
  const auto prompt = prompt_of(200);
  int64_t computed[2] = {0, 0};
  for (bool fork : {false, true}) {
    scheduler_policy p(sched(8, 512), {block_size, 512, false}, nullptr);
    fake_shard shard(block_size, 512);
    for (auto& r : choices(100, prompt, 4, 4, fork)) ASSERT_FALSE(p.add(std::move(r)));
    prompt_counter count{200};
    drive(p, shard, std::ref(count));
    computed[fork ? 1 : 0] = count.computed;
    expect_all_free(p);
  }
  EXPECT_EQ(computed[0], 800);
  EXPECT_EQ(computed[1], 203);
  std::printf("n=4, 200-token prompt, no prefix caching: %ld prompt tokens computed without forks, %ld with\n",
              static_cast<long>(computed[0]), static_cast<long>(computed[1]));
}

TEST(SchedulerFork, ChildWaitsForItsParentsChunkedPrefill) {
  const int len = 30;
  scheduler_policy p(sched(8, 8), {block_size, 64, false}, nullptr);
  fake_shard shard(block_size, 64);
  script_choices(shard, 100, 3);
  for (auto& r : choices(100, prompt_of(len), 3, 6, true)) ASSERT_FALSE(p.add(std::move(r)));
  // The parent's n_computed, as the plans show it, when a child first runs.
  int64_t parent_done = 0;
  std::map<request_id, int64_t> child_start;
  prompt_counter count{len};
  auto out = drive(p, shard, [&](const step_plan& plan) {
    count(plan);
    for (const auto& sp : plan.seqs) {
      if (sp.id != 100 && !child_start.count(sp.id)) {
        child_start[sp.id] = sp.start_pos;
        EXPECT_GE(parent_done, len - 1) << "child " << sp.id << " ran before its parent's prompt";
      }
    }
    for (const auto& sp : plan.seqs)
      if (sp.id == 100) parent_done = sp.start_pos + static_cast<int64_t>(sp.tokens.size());
  });
  EXPECT_EQ(child_start[101], len - 1);
  EXPECT_EQ(child_start[102], len - 1);
  EXPECT_EQ(count.computed, len + 2);
  for (const auto& r : choices(100, prompt_of(len), 3, 6, true)) EXPECT_EQ(out[r.id].tokens, alone(r, 3));
  expect_all_free(p);
}

TEST(SchedulerFork, ForkOfAnUnknownRequestOrAnotherPromptRunsAsAnOrdinaryRequest) {
  const int len = 30;
  scheduler_policy p(sched(8, 64), {block_size, 64, false}, nullptr);
  fake_shard shard(block_size, 64);
  script_choices(shard, 100, 3);
  auto rs = choices(100, prompt_of(len), 3, 5, true);
  rs[1].fork_of = 999;                  // not on this replica
  rs[2].prompt.back() += 1;             // not the same prompt
  std::vector<serving_request> ref = rs;
  for (auto& r : rs) ASSERT_FALSE(p.add(std::move(r)));
  prompt_counter count{len};
  auto out = drive(p, shard, std::ref(count));
  EXPECT_EQ(count.computed, 3 * len);
  EXPECT_EQ(count.copies, 0);
  for (const auto& r : ref) EXPECT_EQ(out[r.id].tokens, alone(r, 3)) << r.id;
  expect_all_free(p);
}

/// Runs the n = 3 choices of a 30-token prompt, calling act(step, policy) before each step; returns
/// every stream. The policy's blocks must all be free at the end.
template <class F>
std::map<request_id, stream> run_with(bool caching, int64_t n_blocks, F&& act) {
  scheduler_policy p(sched(8, 64), {block_size, n_blocks, caching}, nullptr);
  fake_shard shard(block_size, n_blocks);
  script_choices(shard, 100, 3);
  for (auto& r : choices(100, prompt_of(30), 3, 20, true)) EXPECT_FALSE(p.add(std::move(r)));
  std::map<request_id, stream> out;
  for (int step = 0; step < 1000 && p.has_work(); ++step) {
    act(step, p, out);
    if (!p.has_work()) break;
    step_plan plan = p.schedule();
    collect(out, p.update(plan, shard.run(plan)));
  }
  EXPECT_FALSE(p.has_work());
  expect_all_free(p);
  return out;
}

class ForkLifecycle : public ::testing::TestWithParam<bool> {};

TEST_P(ForkLifecycle, CancellingTheParentBeforeTheForkLeavesChildrenOrdinary) {
  auto out = run_with(GetParam(), 64, [](int step, scheduler_policy& p, std::map<request_id, stream>& o) {
    if (step == 0) collect(o, {*p.cancel(100)});
  });
  EXPECT_EQ(out[100].finish, finish_kind::cancelled);
  for (const auto& r : choices(100, prompt_of(30), 3, 20, true)) {
    if (r.id == 100) continue;
    EXPECT_EQ(out[r.id].tokens, alone(r, 3)) << r.id;
  }
}

TEST_P(ForkLifecycle, CancellingTheParentOrAChildAfterTheForkKeepsTheOthersRight) {
  for (request_id victim : {100u, 101u}) {
    auto out = run_with(GetParam(), 64, [victim](int step, scheduler_policy& p, std::map<request_id, stream>& o) {
      if (step == 4) collect(o, {*p.cancel(victim)});  // the children forked at step 1
    });
    EXPECT_EQ(out[victim].finish, finish_kind::cancelled);
    for (const auto& r : choices(100, prompt_of(30), 3, 20, true)) {
      if (r.id == victim) continue;
      EXPECT_EQ(out[r.id].tokens, alone(r, 3)) << "victim " << victim << ", choice " << r.id;
    }
  }
}

TEST_P(ForkLifecycle, PreemptionOfForkedSequencesRecomputesTheSameTokens) {
  // 30 + 20 positions need 13 blocks per choice; 3 choices with their shared prompt blocks fit at
  // first, but not once they all decode: some are preempted and recomputed.
  int64_t preemptions = 0;
  auto out = run_with(GetParam(), 22, [&](int, scheduler_policy& p, std::map<request_id, stream>&) {
    preemptions = p.stats().preemptions;
  });
  EXPECT_GT(preemptions, 0);
  for (const auto& r : choices(100, prompt_of(30), 3, 20, true)) {
    EXPECT_EQ(out[r.id].tokens, alone(r, 3)) << r.id;
    EXPECT_EQ(out[r.id].finish, finish_kind::length);
  }
}

INSTANTIATE_TEST_SUITE_P(PrefixCaching, ForkLifecycle, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "On" : "Off"; });

/// The real model through shard_runner (block copies included): n forked choices give exactly the
/// tokens of n independent requests with the same seeds, greedy and sampled.
TEST(SchedulerFork, RealModelForkedChoicesEqualIndependentRequests) {
  engine_options opts;
  opts.model_path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
  opts.model.threads = 1;
  opts.kv.n_blocks = 64;
  auto tok_engine = engine::load(opts);
  ASSERT_TRUE(tok_engine) << tok_engine.error().what();
  const tokenizer& tok = (*tok_engine)->tok();
  const auto prompt = tok.encode_prompt("Once upon a time, there was a little girl named Lily. She loved to");
  ASSERT_GT(prompt.size() % 16, 1u);  // the last prompt block is partial: children copy it

  for (float temperature : {0.0f, 1.0f}) {
    std::map<request_id, std::vector<int32_t>> got[2];
    for (bool fork : {false, true}) {
      auto runner = shard_runner::load(opts);
      ASSERT_TRUE(runner) << runner.error().what();
      const shard_info info = (*runner)->info();
      scheduler_config sc = sched(8, 64);
      sc.max_model_len = info.context_length;
      scheduler_policy p(sc, {info.block_size, info.n_blocks, true}, &tok);
      for (int j = 0; j < 4; ++j) {
        serving_request r;
        r.id = 100 + static_cast<request_id>(j);
        r.prompt = prompt;
        r.max_tokens = 24;
        r.params.temperature = temperature;
        r.params.seed = 7 + static_cast<uint64_t>(j);
        if (fork && j > 0) r.fork_of = 100;
        ASSERT_FALSE(p.add(std::move(r)));
      }
      int64_t copies = 0;
      for (int step = 0; step < 500 && p.has_work(); ++step) {
        step_plan plan = p.schedule();
        copies += static_cast<int64_t>(plan.copies.size());
        for (const auto& ev : p.update(plan, (*runner)->run(plan))) {
          ASSERT_NE(ev.finish, finish_kind::error) << ev.error;
          if (ev.token >= 0 && !ev.token_is_stop) got[fork][ev.id].push_back(ev.token);
        }
      }
      ASSERT_FALSE(p.has_work());
      expect_all_free(p);
      EXPECT_EQ(copies > 0, fork);
    }
    for (request_id id = 100; id < 104; ++id) {
      EXPECT_EQ(got[1][id], got[0][id]) << "temperature " << temperature << ", choice " << id;
      EXPECT_FALSE(got[1][id].empty());
    }
    if (temperature > 0.0f) {
      EXPECT_NE(got[1][100], got[1][101]);  // the seeds differ, so do the choices
    }
  }
}

}  // namespace
}  // namespace troupe
