#pragma once
// The cluster handshake (handshake.proto): what a node says of itself, and whether two nodes may
// talk. Compatible means: the same protocol version, the same registered message types in the same
// order, and the same cluster config (digest). Builds with another version string but the same
// protocol are compatible.

#include <string>

#include "cluster/cluster_config.hpp"
#include "cluster/handshake.pb.h"

namespace troupe::cluster {

/// This build's Hello for node `name` of cfg.
wire::Hello make_hello(const cluster_config& cfg, const std::string& name);

/// "" when a and b may talk, else why not (naming both sides' values), from a's point of view.
std::string incompatibility(const wire::Hello& mine, const wire::Hello& peer);

/// Answers a peer's serialized Hello with a serialized HelloReply (the node actor's side).
std::string answer_hello(const wire::Hello& mine, const std::string& peer_bytes);

/// Checks a peer's serialized HelloReply: "" when accepted, else the reason (either side's).
std::string check_reply(const wire::Hello& mine, const std::string& reply_bytes);

}  // namespace troupe::cluster
