#pragma once
// A discrete-event simulator of the router: it drives the real strategies (routing_strategies.hpp)
// through a router_policy with a synthetic chat workload over N simulated replicas, and measures
// what prefix affinity buys (prefix-cache hits) and what it costs (load imbalance).
//
// The workload (the same for every strategy): conversations arrive at random (Poisson); each picks
// a shared system prompt (Zipf-skewed over the groups, so some prompts are hot) and runs several
// turns. A turn's prompt is the previous prompt + the model's reply + new user text, so every turn
// shares all earlier turns as a prefix. A conversation waits for its reply, thinks, and sends the
// next turn (closed loop). The arrival rate is set so that the mean in-flight load per replica
// would be `load_per_replica` without any cache hits.
//
// A replica: an LRU prefix cache of `cache_blocks` 16-token blocks named by hash chains, as
// kv_block_manager names them (a prompt hits its longest cached run of leading full blocks, never
// its last token), filled with the prompt's blocks when a request starts and with prompt + reply
// when it ends; and a service model in which a request is in flight for overhead + prefill per
// uncached prompt token + decode per output token (no queueing: continuous batching holds every
// request at once). Blocks in use are not pinned, unlike the real manager: with caches much larger
// than what is in flight that changes little.
//
// Everything is deterministic for a seed (own RNG, no std distributions).

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/serving/routing_strategies.hpp"

namespace troupe {

/// The simulated cluster and workload.
struct route_sim_config {
  int replicas = 8;
  int conversations = 0;            ///< 0: 8 x load_per_replica per replica (32 at the default load)
  uint64_t seed = 1;
  routing_config routing;           ///< load_factor, prefix_blocks, virtual_nodes (the strategy is each in turn)
  int system_prompts = 32;          ///< shared system-prompt groups (Zipf s = 1 popularity)
  int system_tokens_min = 100, system_tokens_max = 600;
  int first_user_tokens_min = 20, first_user_tokens_max = 300;
  int user_tokens_min = 10, user_tokens_max = 150;     ///< later turns' new user text
  int reply_tokens_min = 50, reply_tokens_max = 400;
  int turns_min = 1, turns_max = 8;
  double think_seconds = 10.0;      ///< mean pause between a reply and the next turn (exponential)
  int64_t cache_blocks = 4096;      ///< prefix-cache capacity per replica, in 16-token blocks
  double load_per_replica = 4.0;    ///< offered mean in-flight requests per replica (sets the arrival rate)
  double overhead_seconds = 0.02, prefill_seconds_per_token = 0.0002, decode_seconds_per_token = 0.02;
};

/// What one strategy did with the workload, measured over a steady-state window: from the arrival
/// of the conversation a quarter of the way in to the last arrival (requests arriving in it count).
struct route_sim_result {
  std::string strategy;
  int replicas = 0;
  int64_t requests = 0;              ///< arrived in the window
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;          ///< prompt tokens served from a prefix cache
  double hit_rate = 0;                ///< cached_tokens / prompt_tokens
  double mean_load = 0;               ///< time-averaged in-flight requests per replica
  double max_load_time_avg = 0;       ///< time average of the most loaded replica's in-flight count
  int64_t peak_load = 0;              ///< the most requests one replica ever held
  int64_t p99_load = 0;               ///< 99th percentile of a replica's in-flight count over replica-time
  int64_t over_bound = 0;             ///< placements beyond the chwbl bound ceil(c (L + 1) / n)
  double mean_service_seconds = 0;    ///< mean time in flight (prefill saved by hits shows here)
  double measured_seconds = 0;        ///< length of the measured window
};

/// Runs every strategy of routing_strategy_names() on one generated workload, in that order.
/// invalid_argument for a config out of range (names the field).
expected<std::vector<route_sim_result>> run_route_sim(const route_sim_config& cfg);

}  // namespace troupe
