#pragma once
// The router actor: model name -> the schedulers of its replicas. It picks a replica with a
// router_policy (the strategy of the routing config over the prompt's prefix key: CHWBL by
// default), forwards the request, remembers which replica holds it (for cancel), counts in-flight
// load, and marks a replica unhealthy when its scheduler goes down (monitoring), retrying a request
// that had no token yet on another replica.

#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/messages.hpp"
#include "actors/scheduler_actor.hpp"
#include "runtime/core/error.hpp"
#include "runtime/serving/routing_strategies.hpp"

namespace troupe {

/// One replica of a model, as the router knows it.
struct replica_entry {
  std::string model;
  std::string id;            ///< unique replica name, e.g. "stories260K/0"
  scheduler_actor scheduler;
};

/// route: (model, request, subscriber). An unknown model or no healthy replica answers the
/// subscriber at once with a token_event whose finish is error and whose error names the problem
/// (the gateway checks model names first, so this is the race-only path).
///
/// replica_up (model, replica id, scheduler): a replica joins, or comes back with a new scheduler (a
/// restarted cluster node); replica_down (replica id, why): it missed its heartbeats, route around it
/// until it is up again. A replica whose scheduler actor goes down is taken out at once (monitoring).
using router_actor = caf::typed_actor<caf::reacts_to<std::string, serving_request, caf::actor>,
                                      caf::reacts_to<cancel_atom, request_id>,
                                      caf::reacts_to<replica_up_atom, std::string, std::string, scheduler_actor>,
                                      caf::reacts_to<replica_down_atom, std::string, std::string>,
                                      caf::replies_to<stats_atom>::with<std::vector<scheduler_stats>>>;

/// A router that sends each request to the least-loaded healthy replica (no prefix affinity).
router_actor spawn_router(caf::actor_system& sys, std::vector<replica_entry> replicas);
/// A router with the config's strategy and prefix key; invalid_argument (naming the field) when
/// the config is not valid.
expected<router_actor> spawn_router(caf::actor_system& sys, std::vector<replica_entry> replicas,
                                    const routing_config& routing);

}  // namespace troupe
