#pragma once
// A stand-in for a shard in scheduler tests: its "KV cache" stores the token id of every position in
// block slots, and the token it samples is a hash of everything it reads back through the block
// table. So a wrong block table, a bad prefix-cache hit or a lost copy changes the tokens, and a
// sequence's tokens are the same however it was batched, chunked or preempted.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <vector>

#include "runtime/serving/scheduler_policy.hpp"

namespace troupe::testing {

class fake_shard {
 public:
  fake_shard(int block_size, int64_t n_blocks)
      : bs_(block_size), mem_(static_cast<size_t>(n_blocks * block_size), -1) {}

  /// Tokens are drawn from [lo, lo + span).
  void set_range(int32_t lo, int32_t span) { lo_ = lo, span_ = span; }
  /// The tokens request id samples, in order (then the hash takes over).
  void script(request_id id, std::vector<int32_t> tokens) { scripts_[id] = std::move(tokens); }

  step_result run(const step_plan& plan) {
    step_result r;
    r.step = plan.step;
    for (request_id id : plan.released) {
      EXPECT_TRUE(live_.count(id)) << "released unknown sequence " << id;
      live_.erase(id);
      generated_.erase(id);
    }
    for (const auto& c : plan.copies)
      for (int i = 0; i < bs_; ++i) mem_[slot(c.dst, i)] = mem_[slot(c.src, i)];
    std::set<request_id> seen;
    for (const auto& sp : plan.seqs) {
      EXPECT_TRUE(seen.insert(sp.id).second) << "sequence " << sp.id << " twice in one plan";
      if (sp.new_sequence) {
        EXPECT_FALSE(live_.count(sp.id)) << "sequence " << sp.id << " created twice";
        live_.insert(sp.id);
      } else {
        EXPECT_TRUE(live_.count(sp.id)) << "sequence " << sp.id << " not created";
      }
      const int64_t end = sp.start_pos + static_cast<int64_t>(sp.tokens.size());
      EXPECT_GE(static_cast<int64_t>(sp.block_table.size()) * bs_, end);
      for (size_t k = 0; k < sp.tokens.size(); ++k) at(sp.block_table, sp.start_pos + static_cast<int64_t>(k)) = sp.tokens[k];
      if (!sp.sample) continue;
      seq_output out;
      out.id = sp.id;
      auto sc = scripts_.find(sp.id);
      const size_t idx = generated_[sp.id]++;
      if (sc != scripts_.end() && idx < sc->second.size()) {
        out.sample.token = sc->second[idx];
      } else {
        uint64_t h = 1469598103934665603ull;
        for (int64_t p = 0; p < end; ++p) {
          const int32_t t = at(sp.block_table, p);
          EXPECT_GE(t, 0) << "sequence " << sp.id << " reads unwritten position " << p;
          h = (h ^ static_cast<uint64_t>(t + 1)) * 1099511628211ull;
        }
        out.sample.token = lo_ + static_cast<int32_t>(h % static_cast<uint64_t>(span_));
      }
      r.outputs.push_back(out);
    }
    return r;
  }

 private:
  size_t slot(int32_t block, int i) const { return static_cast<size_t>(block) * static_cast<size_t>(bs_) + static_cast<size_t>(i); }
  int32_t& at(const std::vector<int32_t>& table, int64_t pos) {
    return mem_[slot(table[static_cast<size_t>(pos / bs_)], static_cast<int>(pos % bs_))];
  }

  int bs_;
  std::vector<int32_t> mem_;
  int32_t lo_ = 10, span_ = 200;
  std::set<request_id> live_;
  std::map<request_id, size_t> generated_;
  std::map<request_id, std::vector<int32_t>> scripts_;
};

/// Everything a request's stream received.
struct stream {
  std::vector<int32_t> tokens;  ///< output tokens (a stop token excluded)
  std::string text;
  finish_kind finish = finish_kind::none;
  std::string error;
  usage_counts usage;
  int events = 0;
};

inline void collect(std::map<request_id, stream>& out, const std::vector<token_event>& events) {
  for (const auto& ev : events) {
    stream& s = out[ev.id];
    EXPECT_EQ(s.finish, finish_kind::none) << "event after the end of request " << ev.id;
    ++s.events;
    if (ev.token >= 0 && !ev.token_is_stop) s.tokens.push_back(ev.token);
    s.text += ev.text;
    s.finish = ev.finish;
    s.error = ev.error;
    s.usage = ev.usage;
  }
}

/// Runs the policy with the shard until no work is left; calls on_plan for each plan.
template <class F>
std::map<request_id, stream> drive(scheduler_policy& policy, fake_shard& shard, F&& on_plan, int max_steps = 10000) {
  std::map<request_id, stream> out;
  for (int i = 0; i < max_steps && policy.has_work(); ++i) {
    step_plan plan = policy.schedule();
    on_plan(plan);
    if (plan.seqs.empty()) {
      ADD_FAILURE() << "work left but nothing scheduled";
      break;
    }
    collect(out, policy.update(plan, shard.run(plan)));
  }
  EXPECT_FALSE(policy.has_work());
  return out;
}

inline std::map<request_id, stream> drive(scheduler_policy& policy, fake_shard& shard) {
  return drive(policy, shard, [](const step_plan&) {});
}

}  // namespace troupe::testing
