#pragma once
// One node of a troupe cluster (`troupe node --config FILE --name NODE`): an actor system with CAF's
// middleman that publishes a node actor on the node's port and runs what the cluster config places
// on it:
//
// - shards: each loads its model slice (tp rank, pp stage), with UCX communicators to the other shards
//   of its replica for activations and all-reduce (the data plane never rides on CAF);
// - schedulers: each finds its replica's shards (local, or on other nodes through their node actors)
//   and drives them; when a shard goes down the scheduler fails its requests and is started again once
//   the shards are back;
// - a gateway (on nodes with http_port): the router and the OpenAI-compatible HTTP server. It finds
//   every replica's scheduler, sends each a heartbeat (a stats request) every heartbeat interval, and
//   takes a replica out of routing when its node's connection drops (CAF monitoring) or it misses the
//   heartbeat timeout; a replica that answers again rejoins.
//
// Nodes start in any order: every lookup of a peer retries with backoff (capped at 1 s) until the
// peer is up. The first message to a peer is the handshake (cluster/handshake.hpp); a peer of another
// protocol, message set or cluster config is refused, and the refusal is logged naming both values.
// Under the handshake, nodes authenticate each other with mutual TLS (cluster/tls.hpp) when the config
// has `tls`; the control port listens on the node's configured host only.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor_system.hpp>

#include "cluster/cluster_config.hpp"
#include "runtime/core/error.hpp"

namespace troupe::cluster {

class node_runtime {
 public:
  /// Publishes the node actor (a port in use is an error naming it) and starts this node's parts in
  /// the background; returns once the node is reachable. sys needs the middleman loaded
  /// (configure_node_system).
  static expected<std::unique_ptr<node_runtime>> start(caf::actor_system& sys, cluster_config cfg,
                                                       const std::string& name);
  ~node_runtime();
  node_runtime(const node_runtime&) = delete;
  node_runtime& operator=(const node_runtime&) = delete;

  /// The gateway's bound HTTP port (0 on a node without one).
  uint16_t http_port() const noexcept;
  /// Why a part of this node can never start (a shard whose model slice does not load, a scheduler
  /// whose model file does not open), once one has failed: the node cannot serve its part of the
  /// cluster, so a process should stop and exit non-zero instead of leaving the replica down.
  std::optional<error> failure() const;
  /// Drains the gateway (in-flight requests finish, up to drain), stops every part of the node. false
  /// when a shard still waits for its data-plane peers (a UCX connect cannot be interrupted): its
  /// thread is left running, and the actor system cannot be shut down cleanly; a process should exit.
  bool stop(std::chrono::milliseconds drain = std::chrono::seconds(30));

  struct state;

 private:
  explicit node_runtime(std::shared_ptr<state> s);
  std::shared_ptr<state> s_;
};

/// configure_actor_system plus the middleman (CAF's network layer) and, when the config has tls, CAF's
/// OpenSSL module with node `name`'s files (checked first: an unreadable, mismatched or foreign file is
/// an error naming it).
status configure_node_system(caf::actor_system_config& sys_cfg, const cluster_config& cfg, const std::string& name);

}  // namespace troupe::cluster
