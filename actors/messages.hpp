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
// add_message_type<T>("N") also registers std::vector<T> as "std::vector<N>" and stream<T> as
// "stream<N>".
//
// Tensors never travel in these messages: CAF encodes each float of a vector on its own.

#include <cstdint>
#include <optional>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

#include "runtime/sampling/sampler.hpp"
#include "runtime/serving/shard_runner.hpp"
#include "runtime/serving/step_plan.hpp"

namespace troupe {

// ---- atoms (CAF 0.17: at most 10 characters, 6-bit encoded into a 64-bit value) ----

/// Asks a shard for its shard_info.
using info_atom = caf::atom_constant<caf::atom("info")>;
constexpr info_atom info_atom_v{};

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
           x.logprobs, x.stop_token_ids);
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
           x.block_size);
}

/// Adds every troupe message type to cfg under its stable name; call on every node before the
/// actor system starts.
void register_message_types(caf::actor_system_config& cfg);

}  // namespace troupe
