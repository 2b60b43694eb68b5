#include "actors/router_actor.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>

#include <caf/system_messages.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "runtime/core/log.hpp"
#include "runtime/serving/router_policy.hpp"
#include "runtime/serving/routing_strategies.hpp"

namespace troupe {

// How the router learns that a request ended (for its in-flight load): it puts a small relay actor
// between the scheduler and the subscriber, one per request. The scheduler sends its token events
// to the relay, which passes them on in order and quits after the finishing one. The router
// monitors its relays, so a relay's end is the request's end: no new message type, no change to
// the scheduler, and the router itself stays out of the token path (its mailbox sees two messages
// per request, not one per token).
//
// The relay also carries the failure cases, each through a monitor:
// - the subscriber goes away: the relay quits; the scheduler, which monitors its subscriber (the
//   relay), cancels the request and frees its blocks; the router counts the request finished.
// - the scheduler goes away with the request still open: if no event reached the subscriber yet,
//   the relay quits with `retry_reason` and the router sends the request to another healthy
//   replica of the model; otherwise the subscriber gets an error event. (A scheduler that loses
//   its shard sends error events itself before going down, so those requests end with that error.)
// - the router goes away: the relay quits, so the request is cancelled.
//
// One consequence: the subscriber sees a request's finishing event slightly before the router
// learns of its end (the relay's down message). Request ids must be unique; the router refuses
// an id it still holds in flight with an error event.

namespace {

/// How long the router waits for one scheduler's stats (a gateway asks with a 5 s timeout).
constexpr auto stats_timeout = std::chrono::seconds(2);

/// The exit reason of a relay whose scheduler went down before any event: send it elsewhere.
caf::error retry_reason() { return caf::make_error(caf::sec::request_receiver_down); }

token_event error_event(request_id id, const std::string& why) {
  token_event ev;
  ev.id = id;
  ev.finish = finish_kind::error;
  ev.error = why;
  return ev;
}

struct relay_state {
  // Declared so that the state is no aggregate: CAF 0.17 builds the state as State(self) when
  // that compiles, and C++20 aggregate paren-init would turn the actor pointer into `true`.
  relay_state() = default;
  bool forwarded = false;  ///< an event reached the subscriber
  static inline const char* name = "troupe.relay";
};

caf::behavior event_relay(caf::stateful_actor<relay_state>* self, request_id id, caf::actor subscriber,
                          scheduler_actor scheduler, caf::actor_addr router) {
  self->monitor(subscriber);
  self->monitor(scheduler);
  self->monitor(router);
  // A monitor lives in the actor it watches and holds the watcher's address until one of them
  // ends it: a relay that quit with its monitors still on the scheduler and the router left them
  // there for good, and with them the relay's memory (about 1.2 KB per request, issue 11).
  auto finish = [self, subscriber, scheduler, router](caf::error reason = {}) {
    self->demonitor(subscriber.address());
    self->demonitor(scheduler.address());
    self->demonitor(router);
    self->quit(std::move(reason));
  };
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source != scheduler.address()) {  // the subscriber or the router is gone: cancel
      finish();
      return;
    }
    if (!self->state.forwarded) {
      finish(retry_reason());
      return;
    }
    self->send(subscriber, error_event(id, "request " + std::to_string(id) + ": its replica went down (" +
                                               self->system().render(dm.reason) + ")"));
    finish();
  });
  return {
      [=](token_event& ev) {
        self->state.forwarded = true;
        const bool last = ev.finish != finish_kind::none;
        self->send(subscriber, std::move(ev));
        if (last) finish();
      },
  };
}

class router_impl : public router_actor::base {
 public:
  router_impl(caf::actor_config& cfg, std::vector<replica_entry> replicas, std::unique_ptr<replica_strategy> strategy,
              int prefix_blocks)
      : router_actor::base(cfg),
        replicas_(std::move(replicas)),
        policy_(std::move(strategy)),
        prefix_blocks_(prefix_blocks) {}

  behavior_type make_behavior() override {
    for (const auto& r : replicas_) {
      if (!r.scheduler) {
        spdlog::error("router: replica {} of {} has no scheduler; skipped", r.id, r.model);
        continue;
      }
      if (auto st = policy_.add_replica(r.model, r.id); !st) {
        spdlog::error("router: {}", st.error().what());
        continue;
      }
      by_id_.emplace(r.id, r.scheduler);
      by_addr_.emplace(r.scheduler.address(), r.id);
      monitor(r.scheduler);
    }
    set_down_handler([this](caf::down_msg& dm) { on_down(dm); });
    return {
        [this](std::string& model, serving_request& r, caf::actor& subscriber) {
          on_route(std::move(model), std::move(r), std::move(subscriber));
        },
        [this](cancel_atom, request_id id) { on_cancel(id); },
        [this](replica_up_atom, std::string& model, std::string& id, scheduler_actor& scheduler) {
          on_replica_up(std::move(model), std::move(id), std::move(scheduler));
        },
        [this](replica_down_atom, std::string& id, std::string& why) {
          if (!by_id_.count(id)) return;
          const replica_info* info = policy_.find(id);
          if (info && info->healthy) spdlog::error("router: replica {} is down ({}); no more requests go to it", id, why);
          policy_.on_failure(id);
        },
        [this](stats_atom) -> caf::result<std::vector<scheduler_stats>> { return gather_stats(); },
    };
  }

 private:
  /// A request between route and its end.
  struct routed {
    std::string model;
    serving_request request;          ///< kept for a retry on another replica
    caf::actor subscriber;
    std::string replica;              ///< the replica holding it now
    caf::actor relay;                 ///< the current relay (held: its scheduler may drop the request)
    std::vector<std::string> tried;   ///< replicas that went down under it
    bool cancelled = false;
  };

  void on_replica_up(std::string model, std::string id, scheduler_actor scheduler) {
    if (!scheduler) return;
    auto known = by_id_.find(id);
    if (known == by_id_.end()) {
      if (auto st = policy_.add_replica(model, id); !st) {
        spdlog::error("router: {}", st.error().what());
        return;
      }
      replicas_.push_back(replica_entry{model, id, scheduler});
      spdlog::info("router: replica {} of {} joined", id, model);
    } else if (known->second != scheduler) {  // a new scheduler: the node came back
      by_addr_.erase(known->second.address());
      known->second = scheduler;
      for (auto& r : replicas_)
        if (r.id == id) r.scheduler = scheduler;
      spdlog::info("router: replica {} of {} is back", id, model);
    } else if (const replica_info* info = policy_.find(id); info && !info->healthy) {
      spdlog::info("router: replica {} answers again", id);
    }
    if (by_addr_.emplace(scheduler.address(), id).second) monitor(scheduler);
    by_id_[id] = scheduler;
    policy_.on_recovered(id);
  }

  /// The prefix key of a prompt (for a strategy that keeps shared prefixes on one replica).
  /// A salted request's key carries its salt: its prefix is cached only for its own salt.
  std::string prefix_key(const serving_request& r) const {
    return r.cache_salt + troupe::prefix_key(r.prompt, prefix_blocks_);
  }

  void on_route(std::string model, serving_request r, caf::actor subscriber) {
    const request_id id = r.id;
    if (requests_.count(id)) {
      caf::anon_send(subscriber, error_event(id, "request " + std::to_string(id) + ": a request with this id is in flight"));
      return;
    }
    auto picked = policy_.pick(model, prefix_key(r));
    if (!picked) {
      caf::anon_send(subscriber, error_event(id, "request " + std::to_string(id) + ": " + picked.error().what()));
      return;
    }
    auto& entry = requests_[id];
    entry.model = std::move(model);
    entry.request = std::move(r);
    entry.subscriber = std::move(subscriber);
    dispatch(id, entry, std::move(*picked));
  }

  void dispatch(request_id id, routed& entry, std::string replica) {
    const scheduler_actor& scheduler = by_id_.at(replica);
    auto relay = spawn(event_relay, id, entry.subscriber, scheduler, address());
    monitor(relay);
    relays_[relay.address()] = id;
    entry.relay = relay;
    entry.replica = std::move(replica);
    policy_.on_start(entry.replica);
    ++routed_[entry.replica];
    send(scheduler, entry.request, std::move(relay));
  }

  void on_cancel(request_id id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return;
    it->second.cancelled = true;
    send(by_id_.at(it->second.replica), cancel_atom_v, id);
  }

  void on_down(caf::down_msg& dm) {
    if (auto r = relays_.find(dm.source); r != relays_.end()) {
      const request_id id = r->second;
      relays_.erase(r);
      on_relay_down(id, dm.reason);
      return;
    }
    if (auto s = by_addr_.find(dm.source); s != by_addr_.end()) {
      spdlog::error("router: replica {} went down ({}); no more requests go to it", s->second,
                    system().render(dm.reason));
      policy_.on_failure(s->second);
    }
  }

  void on_relay_down(request_id id, const caf::error& reason) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return;
    routed& entry = it->second;
    policy_.on_finish(entry.replica);
    if (reason == caf::sec::request_receiver_down) {  // its replica went down before any event
      if (entry.cancelled) {
        token_event ev;
        ev.id = id;
        ev.finish = finish_kind::cancelled;
        ev.usage.prompt_tokens = static_cast<int64_t>(entry.request.prompt.size());
        caf::anon_send(entry.subscriber, std::move(ev));
      } else {
        entry.tried.push_back(entry.replica);
        auto picked = policy_.pick_excluding(entry.model, prefix_key(entry.request), entry.tried);
        if (picked) {
          spdlog::warn("router: request {} moves from replica {} (down) to {}", id, entry.replica, *picked);
          dispatch(id, entry, std::move(*picked));
          return;
        }
        caf::anon_send(entry.subscriber, error_event(id, "request " + std::to_string(id) + ": replica " + entry.replica +
                                                   " went down and " + picked.error().what()));
      }
    }
    requests_.erase(it);
  }

  /// Every replica's stats in the order the replicas were given; a replica that does not answer
  /// (down, unreachable) gives a default (all-zero) entry.
  caf::result<std::vector<scheduler_stats>> gather_stats() {
    struct gathering {
      std::vector<scheduler_stats> stats;
      size_t missing = 0;
      caf::typed_response_promise<std::vector<scheduler_stats>> promise;
    };
    auto g = std::make_shared<gathering>();
    g->stats.resize(replicas_.size());
    for (size_t i = 0; i < replicas_.size(); ++i) {
      scheduler_stats& st = g->stats[i];
      st.model = replicas_[i].model;
      st.replica = replicas_[i].id;
      const replica_info* info = policy_.find(st.replica);
      st.up = info && info->healthy;
      st.routed = routed_[st.replica];
    }
    // Only replicas in routing are asked: a request to the proxy of an actor on a dead node is never
    // answered, it would only delay the others' figures.
    auto ask = [&](size_t i) { return replicas_[i].scheduler && g->stats[i].up; };
    for (size_t i = 0; i < replicas_.size(); ++i)
      if (ask(i)) ++g->missing;
    if (g->missing == 0) return std::move(g->stats);
    g->promise = make_response_promise<std::vector<scheduler_stats>>();
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (!ask(i)) continue;
      auto done = [g] {
        if (--g->missing == 0) g->promise.deliver(std::move(g->stats));
      };
      request(replicas_[i].scheduler, stats_timeout, stats_atom_v)
          .then(
              [g, i, done](scheduler_stats& st) {
                st.model = std::move(g->stats[i].model);
                st.replica = std::move(g->stats[i].replica);
                st.up = g->stats[i].up;
                st.routed = g->stats[i].routed;
                g->stats[i] = std::move(st);
                done();
              },
              [done](caf::error&) { done(); });
    }
    return g->promise;
  }

  std::vector<replica_entry> replicas_;
  router_policy policy_;
  int prefix_blocks_;                                        ///< whole blocks of the prompt in the prefix key
  std::unordered_map<std::string, scheduler_actor> by_id_;   ///< replica id -> scheduler
  std::map<caf::actor_addr, std::string> by_addr_;           ///< scheduler -> replica id
  std::unordered_map<request_id, routed> requests_;          ///< in flight
  std::map<caf::actor_addr, request_id> relays_;             ///< live relays
  std::unordered_map<std::string, int64_t> routed_;          ///< replica id -> requests sent to it
};

}  // namespace

router_actor spawn_router(caf::actor_system& sys, std::vector<replica_entry> replicas) {
  return sys.spawn<router_impl>(std::move(replicas), std::make_unique<least_loaded_strategy>(),
                                routing_config{}.prefix_blocks);
}

expected<router_actor> spawn_router(caf::actor_system& sys, std::vector<replica_entry> replicas,
                                    const routing_config& routing) {
  auto strategy = make_replica_strategy(routing);
  TROUPE_TRY(strategy);
  return sys.spawn<router_impl>(std::move(replicas), std::move(*strategy), routing.prefix_blocks);
}

}  // namespace troupe
