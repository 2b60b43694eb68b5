#include "actors/messages.hpp"

#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
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
  cfg.add_message_type<serving_request>("troupe::serving_request");
  cfg.add_message_type<usage_counts>("troupe::usage_counts");
  cfg.add_message_type<token_event>("troupe::token_event");
  cfg.add_message_type<kv_block_stats>("troupe::kv_block_stats");
  cfg.add_message_type<scheduler_stats>("troupe::scheduler_stats");
  cfg.add_message_type<scheduler_actor>("troupe::scheduler_actor");
  cfg.add_message_type<router_actor>("troupe::router_actor");
}

}  // namespace troupe
