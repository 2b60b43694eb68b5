#pragma once
// The single-process actor topology of troupe: for each configured model, its replicas (a shard and a
// scheduler each) and one router in front of them all, routing as the config's `routing` says. `troupe serve` puts a gateway in front of the
// router; the embedding API (embedded.hpp) talks to the router directly.

#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "actors/gateway.hpp"
#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "runtime/config/serve_config.hpp"
#include "runtime/core/error.hpp"

namespace troupe {

/// Registers troupe's message types and tunes CAF's scheduler for compute-heavy shards: one
/// scheduler thread ($TROUPE_CAF_THREADS overrides) with short idle sleeps, so actor hops never wait
/// for a sleeping poller and no polling thread takes a core from the kernels.
void configure_actor_system(caf::actor_system_config& cfg);

/// How one replica of mc loads its engine (path, threads, device, KV budget) and schedules.
engine_options replica_engine_options(const model_config& mc);
scheduler_options replica_scheduler_options(const model_config& mc);

/// The running actors of a topology.
struct local_topology {
  router_actor router;
  std::vector<served_model> models;   ///< name, tokenizer and context length of each model
  std::vector<caf::actor> actors;     ///< every shard and scheduler, then the router

  /// Stops the router, then the schedulers, then the shards (front to back, so nobody reports a
  /// peer's exit as a failure). Idempotent.
  void shutdown();
};

/// Loads every model of cfg (on the calling thread) and spawns its replicas and the router. On error
/// whatever was spawned is stopped again; the message names the model.
expected<local_topology> spawn_topology(caf::actor_system& sys, const serve_config& cfg);

}  // namespace troupe
