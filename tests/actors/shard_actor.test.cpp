// The shard actor in an actor system: eight sequences driven through step plans (prefill chunks,
// then decodes) give exactly engine::generate's tokens; an invalid plan comes back as an error and
// the shard keeps serving; and the same actor answers across a network connection.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <chrono>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/messages.hpp"
#include "actors/shard_actor.hpp"
#include "tests/actors/serving_fixture.hpp"
#include "runtime/engine/engine.hpp"

namespace troupe {
namespace {

using testing::greedy;
using testing::timeout;
using shard_config = testing::serving_config;
engine_options options() { return testing::shard_options(); }

/// Sends plan to the shard and waits for its result; a CAF error (timeout, dead actor) fails the test.
step_result step(caf::scoped_actor& self, const shard_actor& shard, const step_plan& plan) {
  step_result out;
  out.error = "no reply";
  self->request(shard, timeout, plan)
      .receive([&](step_result& r) { out = std::move(r); },
               [&](caf::error& e) { out.error = "caf: " + self->system().render(e); });
  return out;
}

shard_info info(caf::scoped_actor& self, const shard_actor& shard) {
  shard_info out;
  self->request(shard, timeout, info_atom_v)
      .receive([&](shard_info& i) { out = i; },
               [&](caf::error& e) { ADD_FAILURE() << self->system().render(e); });
  return out;
}

/// A miniature scheduler for the test: each sequence owns a fixed run of blocks, joins `delay`
/// steps late, prefills in chunks of `chunk` tokens, then decodes until it has `n_new` tokens.
struct scripted_sequence {
  request_id id = 0;
  std::vector<int32_t> prompt;
  std::vector<int32_t> blocks;
  int delay = 0;
  size_t prefilled = 0;
  std::vector<int32_t> generated;
  bool released = false;
};

class plan_script {
 public:
  plan_script(std::vector<std::vector<int32_t>> prompts, int n_new, int block_size, size_t chunk)
      : n_new_(n_new), chunk_(chunk) {
    int32_t next_block = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      scripted_sequence s;
      s.id = 100 + i;
      s.delay = static_cast<int>(i);
      const int64_t n_pos = static_cast<int64_t>(prompts[i].size()) + n_new;
      // Hand blocks out from both ends of the id range so that tables are not in id order.
      for (int64_t b = 0; b * block_size < n_pos; ++b) s.blocks.push_back(next_block++);
      if (i % 2) std::reverse(s.blocks.begin(), s.blocks.end());
      s.prompt = std::move(prompts[i]);
      seqs_.push_back(std::move(s));
    }
  }

  bool done() const {
    return std::all_of(seqs_.begin(), seqs_.end(),
                       [&](const auto& s) { return static_cast<int>(s.generated.size()) >= n_new_; });
  }

  /// The plan for the next iteration.
  step_plan next() {
    step_plan p;
    p.step = ++step_;
    for (auto& s : seqs_) {
      if (step_ <= static_cast<uint64_t>(s.delay) || static_cast<int>(s.generated.size()) >= n_new_) continue;
      seq_plan q;
      q.id = s.id;
      q.block_table = s.blocks;
      if (s.prefilled < s.prompt.size()) {
        const size_t n = std::min(chunk_, s.prompt.size() - s.prefilled);
        q.tokens.assign(s.prompt.begin() + static_cast<std::ptrdiff_t>(s.prefilled),
                        s.prompt.begin() + static_cast<std::ptrdiff_t>(s.prefilled + n));
        q.start_pos = static_cast<int64_t>(s.prefilled);
        q.new_sequence = s.prefilled == 0;
        if (q.new_sequence) {
          q.params = greedy();
          q.prompt = s.prompt;
        }
        s.prefilled += n;
        q.sample = s.prefilled == s.prompt.size();
      } else {
        q.tokens = {s.generated.back()};
        q.start_pos = static_cast<int64_t>(s.prompt.size() + s.generated.size()) - 1;
        q.sample = true;
      }
      p.seqs.push_back(std::move(q));
    }
    for (auto& s : seqs_)
      if (static_cast<int>(s.generated.size()) == n_new_ && !s.released) {
        p.released.push_back(s.id);
        s.released = true;
      }
    return p;
  }

  /// Records the sampled tokens; checks they come one per sampling sequence, in plan order.
  void accept(const step_plan& p, const step_result& r) {
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_EQ(r.step, p.step);
    size_t k = 0;
    for (const auto& q : p.seqs) {
      if (!q.sample) continue;
      ASSERT_LT(k, r.outputs.size());
      ASSERT_EQ(r.outputs[k].id, q.id);
      find(q.id).generated.push_back(r.outputs[k].sample.token);
      ++k;
    }
    ASSERT_EQ(k, r.outputs.size());
  }

  const std::vector<scripted_sequence>& sequences() const { return seqs_; }

 private:
  scripted_sequence& find(request_id id) {
    for (auto& s : seqs_)
      if (s.id == id) return s;
    throw std::out_of_range("no such sequence");
  }

  int n_new_;
  size_t chunk_;
  uint64_t step_ = 0;
  std::vector<scripted_sequence> seqs_;
};

std::vector<std::vector<int32_t>> prompts(const engine& e) {
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < 8; ++i) out.push_back(e.tok().encode_prompt(testing::prompt_texts()[i]));
  return out;
}

std::vector<std::vector<int32_t>> reference(engine& e, const std::vector<std::vector<int32_t>>& ps, int n_new) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& p : ps) {
    auto g = e.generate(p, greedy(), n_new);
    EXPECT_TRUE(g) << g.error().what();
    out.push_back(g ? g->tokens : std::vector<int32_t>{});
  }
  return out;
}

void expect_matches(const plan_script& script, const std::vector<std::vector<int32_t>>& ref, const engine& e) {
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto& got = script.sequences()[i].generated;
    ASSERT_GE(got.size(), ref[i].size());
    EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(ref[i].size())), ref[i])
        << "sequence " << i;
    if (got.size() > ref[i].size()) {  // generate stopped early: the shard sampled the stop token there
      const auto& stops = e.tok().stop_ids();
      EXPECT_NE(std::find(stops.begin(), stops.end(), got[ref[i].size()]), stops.end()) << "sequence " << i;
    }
  }
}

class ShardActor : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = engine::load(options());
    ASSERT_TRUE(e) << e.error().what();
    engine_ = std::move(*e);
  }
  std::unique_ptr<engine> engine_;  // the reference: generate() one sequence at a time
};

TEST_F(ShardActor, EightSequencesThroughStepPlansMatchEngineGenerate) {
  shard_config cfg;
  caf::actor_system sys{cfg};
  auto shard = spawn_shard(sys, options());
  ASSERT_TRUE(shard) << shard.error().what();
  caf::scoped_actor self{sys};

  const shard_info si = info(self, *shard);
  EXPECT_EQ(si.n_blocks, 128);
  EXPECT_EQ(si.block_size, 16);
  EXPECT_EQ(si.n_vocab, engine_->hparams().n_vocab);

  const int n_new = 12;
  const auto ps = prompts(*engine_);
  const auto ref = reference(*engine_, ps, n_new);
  plan_script script(ps, n_new, si.block_size, 5);
  int steps = 0, mixed = 0;
  while (!script.done() && steps < 200) {
    const step_plan p = script.next();
    const bool has_prefill = std::any_of(p.seqs.begin(), p.seqs.end(), [](auto& q) { return q.tokens.size() > 1; });
    const bool has_decode = std::any_of(p.seqs.begin(), p.seqs.end(), [](auto& q) { return q.tokens.size() == 1; });
    mixed += has_prefill && has_decode;
    script.accept(p, step(self, *shard, p));
    ASSERT_FALSE(HasFatalFailure()) << "step " << p.step;
    ++steps;
  }
  ASSERT_TRUE(script.done());
  EXPECT_GT(mixed, 0) << "no step mixed prefill chunks with decodes";
  expect_matches(script, ref, *engine_);
  self->send_exit(*shard, caf::exit_reason::user_shutdown);
}

TEST_F(ShardActor, AnInvalidPlanComesBackAsAnErrorAndTheShardKeepsServing) {
  shard_config cfg;
  caf::actor_system sys{cfg};
  auto shard = spawn_shard(sys, options());
  ASSERT_TRUE(shard) << shard.error().what();
  caf::scoped_actor self{sys};
  const shard_info si = info(self, *shard);

  const int n_new = 6;
  const auto ps = prompts(*engine_);
  const auto ref = reference(*engine_, ps, n_new);
  plan_script script(ps, n_new, si.block_size, 7);
  int steps = 0;
  while (!script.done() && steps < 200) {
    const step_plan p = script.next();
    if (steps == 2 || steps == 4) {
      // The same plan with one bad value: nothing of it may run, and the next plans still work.
      step_plan bad = p;
      ASSERT_FALSE(bad.seqs.empty());
      if (steps == 2)
        bad.seqs.back().tokens.back() = si.n_vocab;  // token id out of range
      else
        bad.seqs.front().block_table.back() = static_cast<int32_t>(si.n_blocks);  // block id out of range
      bad.released.clear();  // releases apply even to a failed plan: keep the script's bookkeeping simple
      const step_result r = step(self, *shard, bad);
      EXPECT_EQ(r.step, bad.step);
      EXPECT_TRUE(r.outputs.empty());
      EXPECT_NE(r.error.find(steps == 2 ? "token id" : "block id"), std::string::npos) << r.error;
    }
    script.accept(p, step(self, *shard, p));
    ASSERT_FALSE(HasFatalFailure()) << "step " << p.step;
    ++steps;
  }
  ASSERT_TRUE(script.done());
  expect_matches(script, ref, *engine_);
  self->send_exit(*shard, caf::exit_reason::user_shutdown);
}

TEST_F(ShardActor, AStepCrossesTheNetworkToAPublishedShard) {
  const auto ps = prompts(*engine_);
  const auto ref = reference(*engine_, {ps[1]}, 2);
  ASSERT_EQ(ref[0].size(), 2u);

  shard_config server_cfg(true);
  caf::actor_system server{server_cfg};
  auto shard = spawn_shard(server, options());
  ASSERT_TRUE(shard) << shard.error().what();
  auto port = server.middleman().publish(*shard, 0, "127.0.0.1");
  ASSERT_TRUE(port) << server.render(port.error());

  {
    shard_config client_cfg(true);
    caf::actor_system client{client_cfg};
    auto remote = client.middleman().remote_actor<shard_actor>("127.0.0.1", *port);
    ASSERT_TRUE(remote) << client.render(remote.error());
    // A proxy for an actor on another node, not the local actor itself.
    ASSERT_NE(client.node(), server.node());
    EXPECT_EQ(remote->node(), server.node());
    caf::scoped_actor self{client};
    const shard_info si = info(self, *remote);
    EXPECT_EQ(si.n_blocks, 128);

    seq_plan q;
    q.id = 42;
    q.tokens = ps[1];
    q.prompt = ps[1];
    q.block_table = {3, 1, 2};
    q.sample = true;
    q.new_sequence = true;
    q.params = greedy();
    q.params.seed = 7;
    q.params.logprobs = 2;
    step_result r = step(self, *remote, step_plan{1, {{0, 5}}, {q}, {}});
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].id, 42u);
    EXPECT_EQ(r.outputs[0].sample.token, ref[0][0]);
    ASSERT_EQ(r.outputs[0].sample.top.size(), 2u);
    EXPECT_EQ(r.outputs[0].sample.top[0].id, ref[0][0]);
    // The second step: a decode, and an error string crossing back.
    seq_plan d;
    d.id = 42;
    d.tokens = {ref[0][0]};
    d.start_pos = static_cast<int64_t>(ps[1].size());
    d.block_table = q.block_table;
    d.sample = true;
    r = step(self, *remote, step_plan{2, {}, {d}, {}});
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.outputs[0].sample.token, ref[0][1]);
    d.id = 43;
    r = step(self, *remote, step_plan{3, {}, {d}, {}});
    EXPECT_NE(r.error.find("sequence 43"), std::string::npos) << r.error;
  }
  caf::anon_send_exit(*shard, caf::exit_reason::user_shutdown);
}

}  // namespace
}  // namespace troupe
