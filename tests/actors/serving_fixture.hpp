#pragma once
// What the scheduler and router tests share: an actor system with troupe's message types, real
// shards on stories260K, a reference engine for engine::generate, and a scoped_actor that collects
// token_events until every request it waits for has finished.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"
#include <caf/io/middleman.hpp>

#include "runtime/engine/engine.hpp"

namespace troupe::testing {

constexpr auto timeout = std::chrono::seconds(60);

inline engine_options shard_options(int64_t n_blocks = 128) {
  engine_options opts;
  opts.model_path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
  opts.model.threads = 1;
  opts.kv.n_blocks = n_blocks;
  return opts;
}

struct serving_config : caf::actor_system_config {
  /// network: load the middleman, for tests that publish actors on loopback.
  explicit serving_config(bool network = false) {
    register_message_types(*this);
    set("scheduler.max-threads", 2);
    if (network) load<caf::io::middleman>();
  }
};

inline sampling_params greedy() {
  sampling_params p;
  p.temperature = 0.0f;
  return p;
}

/// Everything one request's stream delivered.
struct stream {
  std::vector<token_event> events;
  std::vector<int32_t> tokens;  ///< output tokens (a final stop token excluded)
  std::string text;
  const token_event* last() const { return events.empty() ? nullptr : &events.back(); }
  finish_kind finish() const { return events.empty() ? finish_kind::none : events.back().finish; }
};

/// Receives token_events on self until every id in ids has finished (or the timeout passes: a
/// failure). Checks that no event follows a request's finishing event.
inline std::map<request_id, stream> collect(caf::scoped_actor& self, std::set<request_id> ids,
                                            std::chrono::milliseconds limit = timeout) {
  std::map<request_id, stream> out;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ids.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << ids.size() << " request(s) did not finish in time, first " << *ids.begin();
      break;
    }
    bool timed_out = false;
    self->receive(
        [&](token_event& ev) {
          stream& s = out[ev.id];
          EXPECT_TRUE(s.events.empty() || s.events.back().finish == finish_kind::none)
              << "an event after request " << ev.id << " finished";
          if (ev.token >= 0 && !ev.token_is_stop) s.tokens.push_back(ev.token);
          s.text += ev.text;
          if (ev.finish != finish_kind::none) ids.erase(ev.id);
          s.events.push_back(std::move(ev));
        },
        caf::after(left) >> [&] { timed_out = true; });
    if (timed_out) {
      ADD_FAILURE() << ids.size() << " request(s) did not finish in time, first " << *ids.begin();
      break;
    }
  }
  return out;
}

/// Nothing more arrives at self within `quiet`.
inline bool mailbox_stays_empty(caf::scoped_actor& self, std::chrono::milliseconds quiet) {
  bool got = false;
  self->receive([&](caf::message&) { got = true; }, caf::after(quiet) >> [] {});
  return !got;
}

template <class Handle>
scheduler_stats stats_of(caf::scoped_actor& self, const Handle& h) {
  scheduler_stats out;
  self->request(h, timeout, stats_atom_v)
      .receive([&](scheduler_stats& s) { out = s; },
               [&](caf::error& e) { ADD_FAILURE() << self->system().render(e); });
  return out;
}

/// Polls a scheduler until it holds no request (and no KV block), or the timeout passes.
inline scheduler_stats wait_idle(caf::scoped_actor& self, const scheduler_actor& s,
                                 std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  scheduler_stats st = stats_of(self, s);
  while ((st.running || st.waiting || st.kv.blocks_used) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = stats_of(self, s);
  }
  return st;
}

inline serving_request make_request(request_id id, std::vector<int32_t> prompt, int32_t max_tokens) {
  serving_request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.params = greedy();
  r.max_tokens = max_tokens;
  return r;
}

inline const std::vector<std::string>& prompt_texts() {
  static const std::vector<std::string> texts = {
      "Once upon a time",
      "Lily and Ben went to the park. They saw a big",
      "The cat",
      "One day, a little boy named Tim found a shiny red ball under his bed. He",
      "Sue liked to",
      "There was a big tree in the garden, and a bird lived in it. Every morning the bird",
      "Mom said",
      "The dog ran fast to catch the",
      "Tom had a red",
      "The sun was hot and the children wanted to",
      "Once there was a little girl who loved to sing. She",
      "A big fish",
      "Anna found a box. Inside the box",
      "The bird sang",
      "Max and his friend built a tower of blocks. Then",
      "It was a rainy day, so",
  };
  return texts;
}

/// A reference engine (generate() one sequence at a time) and its tokenizer, shared with the
/// schedulers under test.
class serving_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = engine::load(shard_options());
    ASSERT_TRUE(e) << e.error().what();
    engine_ = std::move(*e);
    // The engine outlives every actor system of a test: alias its tokenizer, no copy.
    tok_ = std::shared_ptr<const tokenizer>(std::shared_ptr<void>{}, &engine_->tok());
  }

  std::vector<int32_t> prompt(size_t i) const { return engine_->tok().encode_prompt(prompt_texts()[i]); }

  std::vector<int32_t> reference(const std::vector<int32_t>& p, int max_tokens) {
    auto g = engine_->generate(p, greedy(), max_tokens);
    EXPECT_TRUE(g) << g.error().what();
    return g ? g->tokens : std::vector<int32_t>{};
  }

  /// A shard on stories260K and its scheduler.
  struct replica {
    shard_actor shard;
    scheduler_actor scheduler;
  };
  replica spawn_replica(caf::actor_system& sys, const scheduler_options& opts = {}, int64_t n_blocks = 128) {
    replica r;
    auto shard = spawn_shard(sys, shard_options(n_blocks));
    EXPECT_TRUE(shard) << shard.error().what();
    if (!shard) return r;
    r.shard = *shard;
    auto sched = spawn_scheduler(sys, r.shard, tok_, opts);
    EXPECT_TRUE(sched) << sched.error().what();
    if (sched) r.scheduler = *sched;
    return r;
  }
  static void stop(caf::scoped_actor& self, const replica& r) {
    if (r.scheduler) self->send_exit(r.scheduler, caf::exit_reason::user_shutdown);
    if (r.shard) self->send_exit(r.shard, caf::exit_reason::user_shutdown);
  }

  std::unique_ptr<engine> engine_;
  std::shared_ptr<const tokenizer> tok_;
};

}  // namespace troupe::testing
