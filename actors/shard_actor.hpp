#pragma once
// The shard actor: carries step plans to a shard_runner and its results back. All the work lives
// in shard_runner (runtime/serving/); this actor only gives it a mailbox and a thread.
//
// Threading: the shard is two actors. Its address is a scheduled (event-based) front that never
// blocks: it answers info queries at once and hands each step plan to a worker, a blocking actor
// with a thread of its own that owns the shard_runner. A forward step therefore blocks only that
// thread, never CAF's scheduler threads; the worker's mailbox is the queue, so one step runs at a
// time and plans run in arrival order. The reply is an ordinary response message. An invalid plan,
// or a worker that died, comes back as a step_result with `error` set; the shard keeps serving.
// The front and the worker are linked: stopping the front stops the worker.

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/messages.hpp"
#include "runtime/core/error.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/serving/shard_runner.hpp"

namespace troupe {

/// A shard's typed interface: a step plan in, its step result out; info_atom for the shard's
/// vocabulary, context and KV pool shape (what a scheduler needs to plan for it).
using shard_actor = caf::typed_actor<caf::replies_to<step_plan>::with<step_result>,
                                     caf::replies_to<info_atom>::with<shard_info>>;

/// Spawns a shard serving runner on its own thread.
shard_actor spawn_shard(caf::actor_system& sys, std::unique_ptr<shard_runner> runner);

/// Loads the model (on the calling thread) and spawns a shard serving it.
expected<shard_actor> spawn_shard(caf::actor_system& sys, const engine_options& opts);

}  // namespace troupe
