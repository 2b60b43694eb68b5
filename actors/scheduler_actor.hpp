#pragma once
// The scheduler actor: one per model replica. It owns a scheduler_policy (all the logic) and drives
// its shard: while there is work it sends one step plan at a time, feeds the result back into the
// policy, and sends every token_event to the subscriber actor of its request at once. It never
// blocks: the forward step runs on the shard's own thread and comes back as a response message.

#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/messages.hpp"
#include "actors/shard_actor.hpp"
#include "runtime/core/error.hpp"
#include "runtime/serving/scheduler_policy.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// A replica's scheduler. A request arrives with the actor that receives its token_event messages
/// (each event is sent as a plain `token_event` message; the last one has finish != none). cancel
/// ends a request at once (its blocks are freed; the subscriber gets the cancelled event).
using scheduler_actor = caf::typed_actor<caf::reacts_to<serving_request, caf::actor>,
                                         caf::reacts_to<cancel_atom, request_id>,
                                         caf::replies_to<stats_atom>::with<scheduler_stats>>;

/// What a scheduler needs besides its shard.
struct scheduler_options {
  scheduler_config policy;                 ///< max_model_len 0: taken from the shard's info
  int64_t kv_blocks = 0;                   ///< 0: the shard's pool size
  bool enable_prefix_caching = true;
};

/// Asks the shard for its shape (blocking this thread once, at start-up) and spawns the scheduler.
/// tok is shared with the gateway, which tokenizes; the scheduler detokenizes for stop strings.
expected<scheduler_actor> spawn_scheduler(caf::actor_system& sys, shard_actor shard,
                                          std::shared_ptr<const tokenizer> tok,
                                          const scheduler_options& opts = {});
/// A replica of several shards (tp x pp, stage by stage): each step goes to all of them; the one whose
/// info says it samples returns the tokens. The KV pool is the smallest of the shards'.
expected<scheduler_actor> spawn_scheduler(caf::actor_system& sys, std::vector<shard_actor> shards,
                                          std::shared_ptr<const tokenizer> tok,
                                          const scheduler_options& opts = {});

}  // namespace troupe
