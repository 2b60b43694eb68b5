#include "actors/shard_actor.hpp"

#include <caf/blocking_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/spawn_options.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "runtime/core/log.hpp"

namespace troupe {

namespace {

// The worker runs the forward steps on a thread of its own: a blocking actor, whose mailbox is
// the queue of plans. It is not a `spawn<detached>` event-based actor because CAF 0.17.6's
// private threads can deadlock the actor system's shutdown (actor-framework issue #1196, fixed
// in 0.18); a blocking actor's thread ends as soon as its act() returns.
class shard_worker : public caf::blocking_actor {
 public:
  shard_worker(caf::actor_config& cfg, std::unique_ptr<shard_runner> runner)
      : caf::blocking_actor(cfg), runner_(std::move(runner)) {}

  void act() override {
    bool running = true;
    receive_while(running)(
        [&](const step_plan& plan) -> step_result { return runner_->run(plan); },
        [&](caf::exit_msg& msg) {  // from the linked front: the shard is going away
          fail_state(std::move(msg.reason));
          running = false;
        });
  }

 private:
  std::unique_ptr<shard_runner> runner_;
};

// The front is the shard's address: a scheduled actor that never blocks. It hands each plan to
// the worker and answers with the worker's result, turning a lost worker into a step error.
class shard_front : public shard_actor::base {
 public:
  shard_front(caf::actor_config& cfg, std::unique_ptr<shard_runner> runner)
      : shard_actor::base(cfg), info_(runner->info()), runner_(std::move(runner)) {}

  behavior_type make_behavior() override {
    worker_ = spawn<shard_worker, caf::linked>(std::move(runner_));
    return {
        [this](step_plan& plan) -> caf::result<step_result> {
          auto rp = make_response_promise<step_result>();
          const uint64_t step = plan.step;
          request(worker_, caf::infinite, std::move(plan))
              .then(
                  [rp](step_result& r) mutable {
                    if (!r.error.empty()) spdlog::warn("shard: step {} failed: {}", r.step, r.error);
                    rp.deliver(std::move(r));
                  },
                  [this, rp, step](caf::error& err) mutable {
                    step_result r;
                    r.step = step;
                    r.error = "internal: shard worker: " + system().render(err);
                    spdlog::error("shard: step {} failed: {}", step, r.error);
                    rp.deliver(std::move(r));
                  });
          return rp;
        },
        [this](info_atom) -> shard_info { return info_; },
    };
  }

 private:
  shard_info info_;
  std::unique_ptr<shard_runner> runner_;  ///< until the worker takes it
  caf::actor worker_;
};

}  // namespace

shard_actor spawn_shard(caf::actor_system& sys, std::unique_ptr<shard_runner> runner) {
  return sys.spawn<shard_front>(std::move(runner));
}

expected<shard_actor> spawn_shard(caf::actor_system& sys, const engine_options& opts) {
  auto runner = shard_runner::load(opts);
  TROUPE_TRY(runner);
  return spawn_shard(sys, std::move(*runner));
}

}  // namespace troupe
