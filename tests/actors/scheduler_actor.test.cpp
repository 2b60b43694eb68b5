// The scheduler actor over a real shard: streamed tokens equal engine::generate; cancel, stop
// strings, a bad request, a subscriber that dies and a shard that dies each end a request the way
// the interface promises; the loop does not spin when idle.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <caf/all.hpp>

#include "actors/scheduler_actor.hpp"
#include "tests/actors/serving_fixture.hpp"

namespace troupe::testing {
namespace {

using SchedulerActor = serving_test;

TEST_F(SchedulerActor, ConcurrentRequestsStreamExactlyEngineGenerateTokens) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  scheduler_options opts;
  opts.policy.max_num_batched_tokens = 32;  // prompts arrive in chunks alongside decodes
  auto rep = spawn_replica(sys, opts);
  ASSERT_TRUE(rep.scheduler);

  const int max_tokens = 20;
  std::set<request_id> ids;
  for (size_t i = 0; i < 8; ++i) {
    self->send(rep.scheduler, make_request(i + 1, prompt(i), max_tokens), caf::actor{self});
    ids.insert(i + 1);
  }
  auto got = collect(self, ids);
  for (size_t i = 0; i < 8; ++i) {
    const stream& s = got[i + 1];
    EXPECT_EQ(s.tokens, reference(prompt(i), max_tokens)) << "request " << i + 1;
    ASSERT_NE(s.last(), nullptr);
    EXPECT_TRUE(s.finish() == finish_kind::stop || s.finish() == finish_kind::length);
    EXPECT_EQ(s.last()->usage.prompt_tokens, static_cast<int64_t>(prompt(i).size()));
    EXPECT_FALSE(s.text.empty());
  }
  const scheduler_stats st = wait_idle(self, rep.scheduler);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  stop(self, rep);
}

TEST_F(SchedulerActor, ACancelMidGenerationEndsCancelledAndFreesTheBlocks) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);

  serving_request r = make_request(7, prompt(1), 400);
  r.ignore_eos = true;
  self->send(rep.scheduler, r, caf::actor{self});
  int tokens = 0;
  bool cancelled_sent = false;
  token_event last;
  while (last.finish == finish_kind::none) {
    bool timed_out = false;
    self->receive([&](token_event& ev) { last = std::move(ev); }, caf::after(timeout) >> [&] { timed_out = true; });
    ASSERT_FALSE(timed_out);
    if (last.token >= 0) ++tokens;
    if (tokens == 3 && !cancelled_sent) {
      EXPECT_GT(stats_of(self, rep.scheduler).kv.blocks_used, 0);
      self->send(rep.scheduler, cancel_atom_v, request_id{7});
      cancelled_sent = true;
    }
  }
  EXPECT_EQ(last.finish, finish_kind::cancelled);
  EXPECT_EQ(last.id, 7u);
  EXPECT_LT(last.usage.completion_tokens, 400);
  const scheduler_stats st = stats_of(self, rep.scheduler);  // cancel frees at once, no polling
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  EXPECT_TRUE(mailbox_stays_empty(self, std::chrono::milliseconds(50)));
  // Cancelling an unknown or finished request is a no-op.
  self->send(rep.scheduler, cancel_atom_v, request_id{7});
  EXPECT_TRUE(mailbox_stays_empty(self, std::chrono::milliseconds(50)));
  stop(self, rep);
}

TEST_F(SchedulerActor, AStopStringEndsTheRequestAndIsCutFromTheText) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);

  // The full text first, then the same request with a stop string taken from its middle.
  serving_request r = make_request(1, prompt(0), 40);
  r.ignore_eos = true;
  self->send(rep.scheduler, r, caf::actor{self});
  const std::string full = collect(self, {1})[1].text;
  ASSERT_GT(full.size(), 40u) << full;
  const std::string stop_string = full.substr(full.size() / 2, 4);
  const size_t at = full.find(stop_string);

  r.id = 2;
  r.stop = {"never appears \x01", stop_string};
  self->send(rep.scheduler, r, caf::actor{self});
  const stream s = collect(self, {2})[2];
  EXPECT_EQ(s.finish(), finish_kind::stop);
  EXPECT_EQ(s.text, full.substr(0, at)) << "stop string: '" << stop_string << "'";
  EXPECT_LT(s.last()->usage.completion_tokens, 40);
  EXPECT_EQ(wait_idle(self, rep.scheduler).kv.blocks_used, 0);
  stop(self, rep);
}

TEST_F(SchedulerActor, ABadRequestGetsAnErrorEventAndTheOthersCarryOn) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);

  self->send(rep.scheduler, make_request(1, prompt(2), 8), caf::actor{self});
  self->send(rep.scheduler, make_request(2, {}, 8), caf::actor{self});              // empty prompt
  self->send(rep.scheduler, make_request(1, prompt(3), 8), caf::actor{self});       // duplicate id
  std::vector<int32_t> too_long(3000, 5);  // longer than the context and the KV cache
  self->send(rep.scheduler, make_request(3, too_long, 8), caf::actor{self});
  // The duplicate's error event carries id 1 too: count events by finish instead of by id.
  int errors = 0, finished_ok = 0;
  std::vector<std::string> messages;
  while (errors + finished_ok < 4) {
    bool timed_out = false;
    self->receive(
        [&](token_event& ev) {
          if (ev.finish == finish_kind::error) {
            ++errors;
            messages.push_back(ev.error);
          } else if (ev.finish != finish_kind::none) {
            ++finished_ok;
            EXPECT_EQ(ev.id, 1u);
          }
        },
        caf::after(timeout) >> [&] { timed_out = true; });
    ASSERT_FALSE(timed_out);
  }
  EXPECT_EQ(errors, 3);
  EXPECT_EQ(finished_ok, 1);
  for (const auto& m : messages) EXPECT_FALSE(m.empty());
  stop(self, rep);
}

TEST_F(SchedulerActor, ASubscriberThatDiesMidStreamGetsItsRequestCancelled) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);

  // A client's request actor that goes away after two tokens (a disconnect).
  auto seen = std::make_shared<std::atomic<int>>(0);
  auto client = sys.spawn([seen](caf::event_based_actor* client_self) -> caf::behavior {
    return {[=](token_event&) {
      if (++*seen == 2) client_self->quit();
    }};
  });
  serving_request r = make_request(9, prompt(5), 400);
  r.ignore_eos = true;
  self->send(rep.scheduler, r, client);
  const scheduler_stats st = wait_idle(self, rep.scheduler);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  EXPECT_LT(st.steps, 300) << "the request ran on after its subscriber died";
  EXPECT_GE(seen->load(), 2);
  stop(self, rep);
}

TEST_F(SchedulerActor, AShardThatDiesEndsEveryRequestWithAnErrorAndTheSchedulerGoesDown) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);
  self->monitor(rep.scheduler);

  std::set<request_id> ids;
  for (request_id id = 1; id <= 4; ++id) {
    serving_request r = make_request(id, prompt(id), 400);
    r.ignore_eos = true;
    self->send(rep.scheduler, r, caf::actor{self});
    ids.insert(id);
  }
  // Let them start, then take the shard away.
  bool timed_out = false;
  self->receive([](token_event&) {}, caf::after(timeout) >> [&] { timed_out = true; });
  ASSERT_FALSE(timed_out);
  self->send_exit(rep.shard, caf::exit_reason::kill);
  std::set<request_id> ended;
  bool down = false;
  while (ended.size() < ids.size() || !down) {
    timed_out = false;
    self->receive(
        [&](token_event& ev) {
          if (ev.finish == finish_kind::none) return;
          EXPECT_EQ(ev.finish, finish_kind::error) << ev.id;
          EXPECT_FALSE(ev.error.empty());
          EXPECT_TRUE(ended.insert(ev.id).second) << "two finishing events for request " << ev.id;
        },
        [&](caf::down_msg& dm) {
          EXPECT_EQ(dm.source, rep.scheduler.address());
          down = true;
        },
        caf::after(timeout) >> [&] { timed_out = true; });
    ASSERT_FALSE(timed_out) << ended.size() << " of " << ids.size() << " ended, down " << down;
  }
  EXPECT_EQ(ended, ids);
}

TEST_F(SchedulerActor, UnderKvPressureRequestsArePreemptedAndStillMatchEngineGenerate) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  scheduler_options opts;
  opts.kv_blocks = 10;  // 160 tokens for six requests that grow to ~60-90 tokens each
  opts.policy.max_num_batched_tokens = 32;
  auto rep = spawn_replica(sys, opts);
  ASSERT_TRUE(rep.scheduler);

  const int max_tokens = 48;
  std::set<request_id> ids;
  for (size_t i = 0; i < 6; ++i) {
    self->send(rep.scheduler, make_request(i + 1, prompt(i), max_tokens), caf::actor{self});
    ids.insert(i + 1);
  }
  auto got = collect(self, ids, std::chrono::seconds(20));
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(got[i + 1].tokens, reference(prompt(i), max_tokens)) << "request " << i + 1;
  const scheduler_stats st = wait_idle(self, rep.scheduler);
  EXPECT_GT(st.preemptions, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  stop(self, rep);
}

TEST_F(SchedulerActor, AnIdleSchedulerDoesNotSpin) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto rep = spawn_replica(sys);
  ASSERT_TRUE(rep.scheduler);
  self->send(rep.scheduler, make_request(1, prompt(0), 5), caf::actor{self});
  collect(self, {1});
  const int64_t steps = wait_idle(self, rep.scheduler).steps;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // At most one more (an empty plan carrying the release of the finished request to the shard).
  EXPECT_LE(stats_of(self, rep.scheduler).steps, steps + 1);
  stop(self, rep);
}

TEST_F(SchedulerActor, SpawnFailsCleanlyWithoutAShard) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  auto sched = spawn_scheduler(sys, shard_actor{}, tok_);
  EXPECT_FALSE(sched);
}

}  // namespace
}  // namespace troupe::testing
