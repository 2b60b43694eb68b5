#include "actors/messages.hpp"

#include "actors/shard_actor.hpp"

namespace troupe {

void register_message_types(caf::actor_system_config& cfg) {
  // The names are the wire protocol (see messages.hpp): never rename one.
  cfg.add_message_type<sampling_params>("troupe::sampling_params");
  cfg.add_message_type<token_logprob>("troupe::token_logprob");
  cfg.add_message_type<sample_result>("troupe::sample_result");
  cfg.add_message_type<seq_plan>("troupe::seq_plan");
  cfg.add_message_type<block_copy>("troupe::block_copy");
  cfg.add_message_type<step_plan>("troupe::step_plan");
  cfg.add_message_type<seq_output>("troupe::seq_output");
  cfg.add_message_type<step_result>("troupe::step_result");
  cfg.add_message_type<shard_info>("troupe::shard_info");
  cfg.add_message_type<shard_actor>("troupe::shard_actor");
}

}  // namespace troupe
