#include "actors/scheduler_actor.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <caf/system_messages.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "runtime/core/log.hpp"

namespace troupe {

namespace {

/// How long spawn_scheduler waits for a shard's info (a shard answers at once; a remote one takes a
/// round trip; the proxy of a shard whose node just died never answers, and the caller retries).
constexpr auto info_timeout = std::chrono::seconds(5);

// The actor owns the policy and is the only one touching it. It keeps at most one step in flight:
// the policy requires the cycle schedule -> update, and a cancel that frees blocks is only safe
// because the next plan is built after the current result came back.
class scheduler_impl : public scheduler_actor::base {
 public:
  scheduler_impl(caf::actor_config& cfg, std::vector<shard_actor> shards, size_t sampler,
                 std::shared_ptr<const tokenizer> tok, scheduler_config policy_cfg, kv_block_manager_config kv_cfg)
      : scheduler_actor::base(cfg),
        shards_(std::move(shards)),
        sampler_(sampler),
        tok_(std::move(tok)),
        policy_(policy_cfg, kv_cfg, tok_.get()) {}

  behavior_type make_behavior() override {
    for (const auto& s : shards_) monitor(s);
    set_down_handler([this](caf::down_msg& dm) { on_down(dm); });
    return {
        [this](serving_request& r, caf::actor& subscriber) { on_request(std::move(r), std::move(subscriber)); },
        [this](cancel_atom, request_id id) { on_cancel(id); },
        [this](stats_atom) -> scheduler_stats { return policy_.stats(); },
    };
  }

 private:
  void on_request(serving_request r, caf::actor subscriber) {
    const request_id id = r.id;
    if (auto rejected = policy_.add(std::move(r))) {
      caf::anon_send(subscriber, std::move(*rejected));  // never queued: the policy knows nothing of it
      return;
    }
    watch(id, std::move(subscriber));
    pump();
  }

  void on_cancel(request_id id) {
    if (auto ev = policy_.cancel(id)) {
      deliver(std::move(*ev));
      pump();  // its release goes to the shard with the next plan (or an otherwise empty one)
    }
  }

  void on_down(caf::down_msg& dm) {
    if (std::any_of(shards_.begin(), shards_.end(), [&](const shard_actor& s) { return dm.source == s.address(); })) {
      on_shard_down(dm.reason);
      return;
    }
    // A subscriber went away (a client disconnected, a router's relay ended): cancel its requests.
    auto it = watched_.find(dm.source);
    if (it == watched_.end()) return;
    const std::vector<request_id> ids(it->second.begin(), it->second.end());
    watched_.erase(it);
    for (request_id id : ids) {
      subscribers_.erase(id);
      if (policy_.cancel(id)) pending_release_ = true;  // nobody to tell
    }
    pump();
  }

  // Without its shard the replica cannot run anything: every request ends with an error now, and
  // the scheduler goes down too, so that a router monitoring it marks the replica failed.
  void on_shard_down(const caf::error& reason) {
    const std::string why = "the replica's shard went down (" + system().render(reason) + ")";
    spdlog::error("scheduler: {}; failing {} request(s)", why, subscribers_.size());
    std::vector<request_id> ids;
    ids.reserve(subscribers_.size());
    for (const auto& [id, sub] : subscribers_) ids.push_back(id);
    for (request_id id : ids) {
      auto ev = policy_.cancel(id);
      if (!ev) continue;
      ev->finish = finish_kind::error;
      ev->error = "request " + std::to_string(id) + ": " + why;
      deliver(std::move(*ev));
    }
    quit(reason);
  }

  /// Remembers subscriber for id and monitors it (once per subscriber actor).
  void watch(request_id id, caf::actor subscriber) {
    if (!subscriber) return;  // events for it go nowhere; the request still runs to its end
    auto [it, fresh] = watched_.try_emplace(subscriber.address());
    if (fresh) monitor(subscriber);
    it->second.insert(id);
    subscribers_.emplace(id, std::move(subscriber));
  }

  /// Sends ev to its subscriber; a finishing event forgets the request.
  void deliver(token_event ev) {
    auto it = subscribers_.find(ev.id);
    if (it == subscribers_.end()) return;
    if (ev.finish == finish_kind::none) {
      caf::anon_send(it->second, std::move(ev));
      return;
    }
    caf::actor sub = std::move(it->second);
    subscribers_.erase(it);
    auto w = watched_.find(sub.address());
    if (w != watched_.end()) {
      w->second.erase(ev.id);
      if (w->second.empty()) {
        watched_.erase(w);
        demonitor(sub.address());
      }
    }
    pending_release_ = true;  // the shard still holds its sampler until the next plan says otherwise
    caf::anon_send(sub, std::move(ev));
  }

  /// Starts the next step unless one is in flight or nothing can run. Never spins: an empty plan
  /// is retried only while it changes the queue (a preemption makes room to admit the next time);
  /// otherwise the loop waits for the next request, cancel or departure.
  void pump() {
    if (in_flight_) return;
    std::optional<std::tuple<int64_t, int64_t, int64_t>> last;
    for (int attempt = 0; attempt < 1024 && (policy_.has_work() || pending_release_); ++attempt) {
      step_plan plan = policy_.schedule();
      pending_release_ = false;
      if (!plan.seqs.empty() || !plan.released.empty() || !plan.copies.empty()) {
        stalled_ = false;
        run_step(std::move(plan));
        return;
      }
      if (!policy_.has_work()) return;
      const scheduler_stats st = policy_.stats();
      const auto now = std::make_tuple(st.waiting, st.running, st.preemptions);
      if (last == now) break;  // the same empty plan again: nothing can run until something changes
      last = now;
    }
    if (policy_.has_work() && !stalled_) {
      stalled_ = true;
      const scheduler_stats st = policy_.stats();
      spdlog::warn("scheduler: {} waiting and {} running request(s) cannot make progress ({} of {} KV blocks free); "
                   "waiting for a request to end",
                   st.waiting, st.running, st.kv.blocks_free, st.kv.blocks_total);
    }
  }

  // Every shard of the replica gets the plan (tensor and pipeline ranks run it together, exchanging
  // activations among themselves); the step is done when all have answered. The sampling shard's
  // result carries the tokens; an error from any shard fails the step.
  void run_step(step_plan plan) {
    in_flight_ = true;
    plan_ = std::move(plan);
    waiting_ = shards_.size();
    gathered_ = step_result{};
    gathered_.step = plan_.step;
    for (size_t i = 0; i < shards_.size(); ++i) {
      request(shards_[i], caf::infinite, plan_)
          .then([this, i](step_result& r) { on_shard_result(i, std::move(r)); },
                [this, i](caf::error& err) {  // the shard is unreachable: this step's sequences fail
                  step_result r;
                  r.step = plan_.step;
                  r.error = "shard: " + system().render(err);
                  on_shard_result(i, std::move(r));
                });
    }
  }

  void on_shard_result(size_t i, step_result r) {
    if (!r.error.empty()) {
      if (gathered_.error.empty())
        gathered_.error = shards_.size() > 1 ? "shard " + std::to_string(i) + ": " + r.error : std::move(r.error);
    } else if (i == sampler_) {
      gathered_.outputs = std::move(r.outputs);
    }
    if (--waiting_ > 0) return;
    const step_result done = std::move(gathered_);
    on_result(done);
  }

  void on_result(const step_result& r) {
    in_flight_ = false;
    std::vector<token_event> events = policy_.update(plan_, r);
    plan_ = step_plan{};
    for (auto& ev : events) deliver(std::move(ev));
    pump();
  }

  std::vector<shard_actor> shards_;   ///< tp x pp shards, stage by stage
  size_t sampler_ = 0;                ///< the shard whose results carry the tokens
  size_t waiting_ = 0;                ///< shards yet to answer the step in flight
  step_result gathered_;              ///< the step in flight's result so far
  std::shared_ptr<const tokenizer> tok_;  ///< the policy holds a raw pointer into it
  scheduler_policy policy_;
  std::unordered_map<request_id, caf::actor> subscribers_;            ///< live requests
  std::map<caf::actor_addr, std::unordered_set<request_id>> watched_;  ///< monitored subscribers
  step_plan plan_;                ///< the step in flight
  bool in_flight_ = false;
  bool pending_release_ = false;  ///< a request ended since the last plan: tell the shard
  bool stalled_ = false;          ///< warned about a queue that cannot progress
};

}  // namespace

expected<scheduler_actor> spawn_scheduler(caf::actor_system& sys, shard_actor shard,
                                          std::shared_ptr<const tokenizer> tok, const scheduler_options& opts) {
  return spawn_scheduler(sys, std::vector<shard_actor>{std::move(shard)}, std::move(tok), opts);
}

expected<scheduler_actor> spawn_scheduler(caf::actor_system& sys, std::vector<shard_actor> shards,
                                          std::shared_ptr<const tokenizer> tok, const scheduler_options& opts) {
  if (shards.empty() || std::any_of(shards.begin(), shards.end(), [](const shard_actor& s) { return !s; }))
    return make_error(errc::invalid_argument, "spawn_scheduler: no shard");
  // The replica's KV pool is what every shard can hold: the smallest pool (a pipeline stage with
  // more layers, or a rank on a smaller device, has fewer blocks in the same budget).
  std::optional<shard_info> info;
  std::optional<size_t> sampler;
  for (size_t i = 0; i < shards.size(); ++i) {
    std::optional<shard_info> one;
    std::string failure;
    {
      caf::scoped_actor self{sys};
      self->request(shards[i], info_timeout, info_atom_v)
          .receive([&](shard_info& si) { one = si; }, [&](caf::error& e) { failure = sys.render(e); });
    }
    if (!one)
      return make_error(errc::io_error, "spawn_scheduler: shard " + std::to_string(i) + " did not answer its info: " + failure);
    if (one->samples) {
      if (sampler)
        return make_error(errc::invalid_argument, "spawn_scheduler: shards " + std::to_string(*sampler) + " and " +
                                                      std::to_string(i) + " both sample");
      sampler = i;
    }
    if (!info) {
      info = one;
    } else {
      if (one->n_vocab != info->n_vocab || one->block_size != info->block_size || one->context_length != info->context_length)
        return make_error(errc::invalid_argument, "spawn_scheduler: shard " + std::to_string(i) +
                                                      " serves another model shape than shard 0");
      info->n_blocks = std::min(info->n_blocks, one->n_blocks);
    }
  }
  if (!sampler) return make_error(errc::invalid_argument, "spawn_scheduler: no shard of the replica samples");
  if (info->n_blocks <= 0 || info->block_size <= 0)
    return make_error(errc::invalid_argument, "spawn_scheduler: the shard has no KV blocks");
  if (opts.kv_blocks > info->n_blocks)
    return make_error(errc::invalid_argument, "spawn_scheduler: kv_blocks " + std::to_string(opts.kv_blocks) +
                                                  " exceeds the shard's " + std::to_string(info->n_blocks) + " blocks");
  scheduler_config policy = opts.policy;
  if (policy.max_model_len <= 0) policy.max_model_len = info->context_length;
  kv_block_manager_config kv;
  kv.block_size = info->block_size;
  kv.n_blocks = opts.kv_blocks > 0 ? opts.kv_blocks : info->n_blocks;
  kv.enable_prefix_caching = opts.enable_prefix_caching;
  return sys.spawn<scheduler_impl>(std::move(shards), *sampler, std::move(tok), policy, kv);
}

}  // namespace troupe
