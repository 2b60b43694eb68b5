// The cluster handshake: nodes of one build and one config accept each other; another protocol,
// message set or config is refused with both sides' values named.
#include "cluster/handshake.hpp"

#include <gtest/gtest.h>

#include "actors/messages.hpp"

namespace troupe::cluster {
namespace {

cluster_config config(const std::string& digest) {
  cluster_config c;
  c.name = "demo";
  c.digest = digest;
  return c;
}

TEST(Handshake, SameBuildAndConfigAccept) {
  const auto a = make_hello(config("d1"), "head"), b = make_hello(config("d1"), "w1");
  EXPECT_EQ(a.protocol_version(), protocol_version);
  EXPECT_EQ(a.message_types_size(), static_cast<int>(message_type_names().size()));
  EXPECT_EQ(incompatibility(a, b), "");
  EXPECT_EQ(check_reply(a, answer_hello(b, a.SerializeAsString())), "");
}

TEST(Handshake, AnotherProtocolMessageSetOrConfigIsRefusedNamingBoth) {
  const auto mine = make_hello(config("d1"), "head");
  auto old = make_hello(config("d1"), "w1");
  old.set_protocol_version(protocol_version + 1);
  EXPECT_EQ(incompatibility(mine, old), "node 'w1' (" + old.build() + ") speaks protocol " +
                                            std::to_string(protocol_version + 1) + ", this node " + std::to_string(protocol_version));
  // The peer's reply carries the refusal; the asking side reports it.
  EXPECT_NE(check_reply(mine, answer_hello(old, mine.SerializeAsString())).find("refused by node 'w1'"), std::string::npos);

  auto renamed = make_hello(config("d1"), "w1");
  renamed.set_message_types(2, "troupe::other");
  EXPECT_NE(incompatibility(mine, renamed).find("message type 2 as 'troupe::other'"), std::string::npos);
  auto fewer = make_hello(config("d1"), "w1");
  fewer.mutable_message_types()->RemoveLast();
  EXPECT_NE(incompatibility(mine, fewer).find("message types"), std::string::npos);

  const auto other_config = make_hello(config("d2"), "w1");
  EXPECT_EQ(incompatibility(mine, other_config),
            "node 'w1' (" + other_config.build() + ") runs another cluster config (digest d2, this node d1): start every node with the same file");
  EXPECT_EQ(check_reply(mine, "not a protobuf \xff"), "the peer's reply is not a troupe handshake message");
}

}  // namespace
}  // namespace troupe::cluster
