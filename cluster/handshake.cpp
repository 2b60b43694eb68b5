#include "cluster/handshake.hpp"

#include "actors/messages.hpp"

namespace troupe::cluster {

wire::Hello make_hello(const cluster_config& cfg, const std::string& name) {
  wire::Hello h;
  h.set_protocol_version(protocol_version);
  h.set_build("troupe " TROUPE_VERSION);
  h.set_node(name);
  h.set_cluster(cfg.name);
  h.set_config_digest(cfg.digest);
  for (const auto& t : message_type_names()) h.add_message_types(t);
  return h;
}

std::string incompatibility(const wire::Hello& mine, const wire::Hello& peer) {
  const std::string who = "node '" + peer.node() + "' (" + peer.build() + ")";
  if (peer.protocol_version() != mine.protocol_version())
    return who + " speaks protocol " + std::to_string(peer.protocol_version()) + ", this node " +
           std::to_string(mine.protocol_version());
  if (peer.message_types_size() != mine.message_types_size())
    return who + " registers " + std::to_string(peer.message_types_size()) + " message types, this node " +
           std::to_string(mine.message_types_size());
  for (int i = 0; i < mine.message_types_size(); ++i)
    if (peer.message_types(i) != mine.message_types(i))
      return who + " registers message type " + std::to_string(i) + " as '" + peer.message_types(i) + "', this node as '" +
             mine.message_types(i) + "'";
  if (peer.cluster() != mine.cluster())
    return who + " belongs to cluster '" + peer.cluster() + "', this node to '" + mine.cluster() + "'";
  if (peer.config_digest() != mine.config_digest())
    return who + " runs another cluster config (digest " + peer.config_digest() + ", this node " + mine.config_digest() +
           "): start every node with the same file";
  return {};
}

std::string answer_hello(const wire::Hello& mine, const std::string& peer_bytes) {
  wire::HelloReply reply;
  *reply.mutable_node() = mine;
  wire::Hello peer;
  if (!peer.ParseFromString(peer_bytes)) {
    reply.set_accepted(false);
    reply.set_reason("the hello is not a troupe handshake message");
  } else {
    const std::string why = incompatibility(mine, peer);
    reply.set_accepted(why.empty());
    reply.set_reason(why);
  }
  return reply.SerializeAsString();
}

std::string check_reply(const wire::Hello& mine, const std::string& reply_bytes) {
  wire::HelloReply reply;
  if (!reply.ParseFromString(reply_bytes)) return "the peer's reply is not a troupe handshake message";
  if (!reply.accepted()) return "refused by node '" + reply.node().node() + "': " + reply.reason();
  return incompatibility(mine, reply.node());
}

}  // namespace troupe::cluster
