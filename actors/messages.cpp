#include "actors/messages.hpp"

#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"

namespace troupe {

namespace {

// One list of the names: registration and the handshake's comparison read the same entries.
enum name_index : size_t {
  sampling_params_n, token_logprob_n, sample_result_n, seq_plan_n, block_copy_n, step_plan_n, seq_output_n,
  step_result_n, shard_info_n, shard_actor_n, serving_request_n, usage_counts_n, token_event_n, kv_block_stats_n,
  scheduler_stats_n, scheduler_actor_n, router_actor_n,
};

}  // namespace

const std::vector<std::string>& message_type_names() {
  // The names are the wire protocol (see messages.hpp): never rename one, only append.
  static const std::vector<std::string> names{
      "troupe::sampling_params", "troupe::token_logprob",   "troupe::sample_result", "troupe::seq_plan",
      "troupe::block_copy",      "troupe::step_plan",       "troupe::seq_output",    "troupe::step_result",
      "troupe::shard_info",      "troupe::shard_actor",     "troupe::serving_request", "troupe::usage_counts",
      "troupe::token_event",     "troupe::kv_block_stats",  "troupe::scheduler_stats", "troupe::scheduler_actor",
      "troupe::router_actor",
  };
  return names;
}

void register_message_types(caf::actor_system_config& cfg) {
  const auto& n = message_type_names();
  cfg.add_message_type<sampling_params>(n[sampling_params_n]);
  cfg.add_message_type<token_logprob>(n[token_logprob_n]);
  cfg.add_message_type<sample_result>(n[sample_result_n]);
  cfg.add_message_type<seq_plan>(n[seq_plan_n]);
  cfg.add_message_type<block_copy>(n[block_copy_n]);
  cfg.add_message_type<step_plan>(n[step_plan_n]);
  cfg.add_message_type<seq_output>(n[seq_output_n]);
  cfg.add_message_type<step_result>(n[step_result_n]);
  cfg.add_message_type<shard_info>(n[shard_info_n]);
  cfg.add_message_type<shard_actor>(n[shard_actor_n]);
  cfg.add_message_type<serving_request>(n[serving_request_n]);
  cfg.add_message_type<usage_counts>(n[usage_counts_n]);
  cfg.add_message_type<token_event>(n[token_event_n]);
  cfg.add_message_type<kv_block_stats>(n[kv_block_stats_n]);
  cfg.add_message_type<scheduler_stats>(n[scheduler_stats_n]);
  cfg.add_message_type<scheduler_actor>(n[scheduler_actor_n]);
  cfg.add_message_type<router_actor>(n[router_actor_n]);
}

}  // namespace troupe
