// The router actor in front of real schedulers and shards: sixteen concurrent requests come back
// exactly as engine::generate gives them; models are routed by name; an unknown model, a cancel,
// a subscriber that dies and a replica that goes down each end the way the interface promises.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <caf/all.hpp>

#include "actors/router_actor.hpp"
#include "tests/actors/serving_fixture.hpp"

namespace troupe::testing {
namespace {

class RouterActor : public serving_test {
 protected:
  /// Polls the router until the replica at index i holds no request or KV block.
  static scheduler_stats wait_replica_idle(caf::scoped_actor& self, const router_actor& router, size_t i) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      auto all = stats_of_all(self, router);
      if (i >= all.size()) return {};
      const auto& st = all[i];
      if ((st.running + st.waiting + st.kv.blocks_used) == 0 || std::chrono::steady_clock::now() > deadline)
        return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  static std::vector<scheduler_stats> stats_of_all(caf::scoped_actor& self, const router_actor& router) {
    std::vector<scheduler_stats> out;
    self->request(router, timeout, stats_atom_v)
        .receive([&](std::vector<scheduler_stats>& s) { out = std::move(s); },
                 [&](caf::error& e) { ADD_FAILURE() << self->system().render(e); });
    return out;
  }
};

TEST_F(RouterActor, SixteenConcurrentGreedyRequestsMatchEngineGenerate) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  scheduler_options opts;
  opts.policy.max_num_batched_tokens = 64;
  auto a = spawn_replica(sys, opts), b = spawn_replica(sys, opts);
  ASSERT_TRUE(a.scheduler && b.scheduler);
  auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}, {"stories", "stories/1", b.scheduler}});

  const int max_tokens = 24;
  std::set<request_id> ids;
  for (size_t i = 0; i < 16; ++i) {
    self->send(router, std::string("stories"), make_request(100 + i, prompt(i), max_tokens), caf::actor{self});
    ids.insert(100 + i);
  }
  auto got = collect(self, ids);
  for (size_t i = 0; i < 16; ++i) {
    const stream& s = got[100 + i];
    EXPECT_EQ(s.tokens, reference(prompt(i), max_tokens)) << "request " << 100 + i;
    EXPECT_TRUE(s.finish() == finish_kind::stop || s.finish() == finish_kind::length) << "request " << 100 + i;
  }
  // Both replicas worked (least-loaded spreads concurrent requests) and are idle again.
  auto all = stats_of_all(self, router);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_GT(all[0].steps, 0);
  EXPECT_GT(all[1].steps, 0);
  EXPECT_EQ(wait_replica_idle(self, router, 0).kv.blocks_used, 0);
  EXPECT_EQ(wait_replica_idle(self, router, 1).kv.blocks_used, 0);
  self->send_exit(router, caf::exit_reason::user_shutdown);
  stop(self, a);
  stop(self, b);
}

TEST_F(RouterActor, TwoModelsAreRoutedByNameAndAnUnknownModelGetsAnErrorNamingIt) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto a = spawn_replica(sys), b = spawn_replica(sys);
  ASSERT_TRUE(a.scheduler && b.scheduler);
  auto router = spawn_router(sys, {{"tiny-a", "tiny-a/0", a.scheduler}, {"tiny-b", "tiny-b/0", b.scheduler}});

  self->send(router, std::string("tiny-a"), make_request(1, prompt(0), 6), caf::actor{self});
  auto got = collect(self, {1});
  EXPECT_EQ(got[1].tokens, reference(prompt(0), 6));
  auto all = stats_of_all(self, router);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_GT(all[0].steps, 0);
  EXPECT_EQ(all[1].steps, 0) << "tiny-b's replica ran a request for tiny-a";

  self->send(router, std::string("tiny-b"), make_request(2, prompt(1), 6), caf::actor{self});
  got = collect(self, {2});
  EXPECT_EQ(got[2].tokens, reference(prompt(1), 6));
  all = stats_of_all(self, router);
  EXPECT_GT(all[1].steps, 0);

  self->send(router, std::string("no-such-model"), make_request(3, prompt(2), 6), caf::actor{self});
  got = collect(self, {3});
  ASSERT_EQ(got[3].events.size(), 1u);
  EXPECT_EQ(got[3].finish(), finish_kind::error);
  EXPECT_NE(got[3].last()->error.find("no-such-model"), std::string::npos) << got[3].last()->error;

  self->send_exit(router, caf::exit_reason::user_shutdown);
  stop(self, a);
  stop(self, b);
}

TEST_F(RouterActor, ACancelThroughTheRouterEndsCancelledAndFreesTheBlocks) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto a = spawn_replica(sys);
  ASSERT_TRUE(a.scheduler);
  auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}});

  serving_request r = make_request(5, prompt(3), 400);
  r.ignore_eos = true;
  self->send(router, std::string("stories"), r, caf::actor{self});
  token_event last;
  int tokens = 0;
  while (last.finish == finish_kind::none) {
    bool timed_out = false;
    self->receive([&](token_event& ev) { last = std::move(ev); }, caf::after(timeout) >> [&] { timed_out = true; });
    ASSERT_FALSE(timed_out);
    if (++tokens == 3) self->send(router, cancel_atom_v, request_id{5});
  }
  EXPECT_EQ(last.finish, finish_kind::cancelled);
  EXPECT_LT(last.usage.completion_tokens, 400);
  const auto st = wait_replica_idle(self, router, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  // The replica serves on.
  self->send(router, std::string("stories"), make_request(6, prompt(4), 4), caf::actor{self});
  EXPECT_EQ(collect(self, {6})[6].tokens, reference(prompt(4), 4));

  self->send_exit(router, caf::exit_reason::user_shutdown);
  stop(self, a);
}

TEST_F(RouterActor, ASubscriberThatDiesMidStreamGetsItsRequestCancelled) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto a = spawn_replica(sys);
  ASSERT_TRUE(a.scheduler);
  auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}});

  auto seen = std::make_shared<std::atomic<int>>(0);
  auto client = sys.spawn([seen](caf::event_based_actor* client_self) -> caf::behavior {
    return {[=](token_event&) {
      if (++*seen == 2) client_self->quit();
    }};
  });
  serving_request r = make_request(11, prompt(5), 400);
  r.ignore_eos = true;
  self->send(router, std::string("stories"), r, client);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto st = wait_replica_idle(self, router, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv.blocks_used, 0);
  EXPECT_LT(st.steps, 300) << "the request ran on after its subscriber died";
  EXPECT_GE(seen->load(), 2);

  self->send_exit(router, caf::exit_reason::user_shutdown);
  stop(self, a);
}

TEST_F(RouterActor, AReplicaThatGoesDownIsSkippedAndItsRequestsEndWithAnError) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto a = spawn_replica(sys), b = spawn_replica(sys);
  ASSERT_TRUE(a.scheduler && b.scheduler);
  auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}, {"stories", "stories/1", b.scheduler}});

  // One long request on each replica (least-loaded), then replica 0's shard dies under it.
  for (request_id id : {1, 2}) {
    serving_request r = make_request(id, prompt(id), 400);
    r.ignore_eos = true;
    self->send(router, std::string("stories"), r, caf::actor{self});
  }
  std::set<request_id> streaming;
  while (streaming.size() < 2) {
    bool timed_out = false;
    self->receive([&](token_event& ev) { streaming.insert(ev.id); }, caf::after(timeout) >> [&] { timed_out = true; });
    ASSERT_FALSE(timed_out);
  }
  self->send_exit(a.shard, caf::exit_reason::kill);
  self->send(router, cancel_atom_v, request_id{2});  // whichever replica has it, it ends
  auto got = collect(self, {1, 2});
  // The request on replica 0 ended with an error; the other with cancelled, or with the error.
  int errors = 0;
  for (request_id id : {1, 2}) {
    EXPECT_TRUE(got[id].finish() == finish_kind::error || (id == 2 && got[id].finish() == finish_kind::cancelled))
        << id;
    errors += got[id].finish() == finish_kind::error;
  }
  EXPECT_GE(errors, 1);
  // New requests go to replica 1 only, and succeed.
  std::set<request_id> ids;
  for (request_id id = 10; id < 14; ++id) {
    self->send(router, std::string("stories"), make_request(id, prompt(id - 10), 8), caf::actor{self});
    ids.insert(id);
  }
  got = collect(self, ids);
  for (request_id id : ids) EXPECT_EQ(got[id].tokens, reference(prompt(id - 10), 8)) << id;
  auto all = stats_of_all(self, router);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].steps, 0) << "the dead replica answered stats";

  self->send_exit(router, caf::exit_reason::user_shutdown);
  stop(self, b);
}

TEST_F(RouterActor, ARequestSentToADeadReplicaMovesToAHealthyOne) {
  serving_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto a = spawn_replica(sys), b = spawn_replica(sys);
  ASSERT_TRUE(a.scheduler && b.scheduler);
  // Replica 0 is down before the router starts; the router may still pick it for the first request
  // (its down message can come after the request): then the request moves on without an error.
  self->monitor(a.scheduler);
  self->send_exit(a.scheduler, caf::exit_reason::kill);
  self->receive([](caf::down_msg&) {});
  auto router = spawn_router(sys, {{"stories", "stories/0", a.scheduler}, {"stories", "stories/1", b.scheduler}});
  std::set<request_id> ids;
  for (request_id id = 1; id <= 4; ++id) {
    self->send(router, std::string("stories"), make_request(id, prompt(id), 8), caf::actor{self});
    ids.insert(id);
  }
  auto got = collect(self, ids);
  for (request_id id : ids) {
    EXPECT_NE(got[id].finish(), finish_kind::error) << got[id].last()->error;
    EXPECT_EQ(got[id].tokens, reference(prompt(id), 8)) << id;
  }
  self->send_exit(router, caf::exit_reason::user_shutdown);
  self->send_exit(a.shard, caf::exit_reason::user_shutdown);
  stop(self, b);
}

}  // namespace
}  // namespace troupe::testing
