#pragma once
// Every message type and atom that crosses an actor or a process boundary in troupe, with its CAF
// inspector. CAF 0.17 matches types across nodes by the name given to add_message_type, so every
// node must call register_message_types() on its config before starting the actor system, and the
// names below are part of the wire protocol: never rename one, only add.
//
// Registered names (see messages.cpp):
//   troupe::sampling_params  troupe::token_logprob  troupe::sample_result  troupe::seq_plan
//   troupe::block_copy       troupe::step_plan      troupe::seq_output     troupe::step_result
//   troupe::shard_info       troupe::shard_actor (the typed handle)
//   troupe::serving_request  troupe::token_event    troupe::usage_counts   troupe::kv_block_stats
//   troupe::scheduler_stats  troupe::scheduler_actor troupe::router_actor (the typed handles)
// finish_kind travels inside token_event as an int32 (its enumerator value; never renumber).
// add_message_type<T>("N") also registers std::vector<T> as "std::vector<N>" and stream<T> as
// "stream<N>".
//
// Tensors never travel in these messages: CAF encodes each float of a vector on its own.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include "runtime/sampling/sampler.hpp"
#include "runtime/serving/kv_block_manager.hpp"
#include "runtime/serving/scheduler_policy.hpp"
#include "runtime/serving/shard_runner.hpp"
#include "runtime/serving/step_plan.hpp"

namespace troupe {

// ---- atoms (CAF 0.17: at most 10 characters, 6-bit encoded into a 64-bit value) ----

/// Asks a shard for its shard_info.
using info_atom = caf::atom_constant<caf::atom("info")>;
constexpr info_atom info_atom_v{};

/// Ends a request at once (scheduler, router).
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
constexpr cancel_atom cancel_atom_v{};

/// Asks a scheduler (or the router, for all of its schedulers) for its counters.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
constexpr stats_atom stats_atom_v{};

/// A replica (model, id, scheduler) is up: the router adds it, or routes to it again (cluster nodes).
using replica_up_atom = caf::atom_constant<caf::atom("rep_up")>;
constexpr replica_up_atom replica_up_v{};

/// A replica stopped answering (a missed heartbeat): the router stops routing to it.
using replica_down_atom = caf::atom_constant<caf::atom("rep_down")>;
constexpr replica_down_atom replica_down_v{};

/// The cluster handshake: a serialized Hello (cluster/handshake.proto) in, a HelloReply out.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
constexpr hello_atom hello_v{};

/// Asks a node for one of its actors by key ("tales/0" a scheduler, "tales/0/shard1" a shard).
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
constexpr lookup_atom lookup_v{};

/// Asks a node for the UCX worker address its shard published for a data-plane group, by key
/// ("tales/0/shard1/tp"): the shards of a tp/pp group find each other over this authenticated channel.
using ucx_address_atom = caf::atom_constant<caf::atom("ucx_addr")>;
constexpr ucx_address_atom ucx_address_v{};

/// The version of everything above and of the message types below, checked by the cluster
/// handshake: bump it whenever a type, an atom or the meaning of a message changes.
constexpr uint32_t protocol_version = 3;  // 2: serving_request.fork_of; 3: serving_request.cache_salt, ucx_address_atom

/// The registered names of troupe's message types, in registration order (the handshake compares them).
const std::vector<std::string>& message_type_names();

// ---- inspectors ----
// CAF 0.17.6 inspects caf::optional but not std::optional: the seed travels as a presence flag and
// a value, and a load callback rebuilds the std::optional after deserializing.

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  bool has_seed = x.seed.has_value();
  uint64_t seed = x.seed.value_or(0);
  auto rebuild_seed = caf::meta::load_callback([&]() -> caf::error {
    x.seed = has_seed ? std::optional<uint64_t>{seed} : std::nullopt;
    return caf::none;
  });
  return f(caf::meta::type_name("troupe::sampling_params"), x.temperature, x.top_k, x.top_p, x.min_p,
           x.repetition_penalty, x.presence_penalty, x.frequency_penalty, has_seed, seed, rebuild_seed,
           x.logprobs, x.chosen_logprob, x.stop_token_ids);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprob& x) {
  return f(caf::meta::type_name("troupe::token_logprob"), x.id, x.logprob);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sample_result& x) {
  return f(caf::meta::type_name("troupe::sample_result"), x.token, x.logprob, x.top, x.is_stop);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, seq_plan& x) {
  return f(caf::meta::type_name("troupe::seq_plan"), x.id, x.tokens, x.start_pos, x.block_table, x.sample,
           x.new_sequence, x.params, x.prompt);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_copy& x) {
  return f(caf::meta::type_name("troupe::block_copy"), x.src, x.dst);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_plan& x) {
  return f(caf::meta::type_name("troupe::step_plan"), x.step, x.copies, x.seqs, x.released);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, seq_output& x) {
  return f(caf::meta::type_name("troupe::seq_output"), x.id, x.sample);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_result& x) {
  return f(caf::meta::type_name("troupe::step_result"), x.step, x.outputs, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_info& x) {
  return f(caf::meta::type_name("troupe::shard_info"), x.n_vocab, x.n_layers, x.context_length, x.n_blocks,
           x.block_size, x.samples);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, serving_request& x) {
  return f(caf::meta::type_name("troupe::serving_request"), x.id, x.prompt, x.params, x.max_tokens, x.stop,
           x.ignore_eos, x.priority, x.fork_of, x.cache_salt);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, usage_counts& x) {
  return f(caf::meta::type_name("troupe::usage_counts"), x.prompt_tokens, x.completion_tokens,
           x.cached_prompt_tokens);
}

// finish_kind travels as its int32 value; a load callback turns it back into the enum.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_event& x) {
  int32_t finish = static_cast<int32_t>(x.finish);
  auto rebuild_finish = caf::meta::load_callback([&]() -> caf::error {
    if (finish < static_cast<int32_t>(finish_kind::none) || finish > static_cast<int32_t>(finish_kind::error))
      return caf::make_error(caf::sec::invalid_argument, "token_event: unknown finish_kind", finish);
    x.finish = static_cast<finish_kind>(finish);
    return caf::none;
  });
  return f(caf::meta::type_name("troupe::token_event"), x.id, x.token, x.token_is_stop, x.text, x.logprob, x.top,
           finish, rebuild_finish, x.error, x.usage);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_block_stats& x) {
  return f(caf::meta::type_name("troupe::kv_block_stats"), x.blocks_total, x.blocks_used, x.blocks_free,
           x.blocks_cached, x.evictions, x.prefix_query_tokens, x.prefix_hit_tokens);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scheduler_stats& x) {
  return f(caf::meta::type_name("troupe::scheduler_stats"), x.model, x.replica, x.up, x.routed, x.waiting, x.running, x.preemptions,
           x.steps, x.kv);
}

/// Adds every troupe message type to cfg under its stable name; call on every node before the
/// actor system starts.
void register_message_types(caf::actor_system_config& cfg);

}  // namespace troupe
