// The interface that carries a host's address: the UCX data plane listens only there.
#include "runtime/comm/net_interface.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(NetInterface, LoopbackAddressesAndNamesAreOnLo) {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    auto i = interface_of(host);
    ASSERT_TRUE(i) << host << ": " << i.error().what();
    EXPECT_EQ(*i, "lo") << host;
  }
}

TEST(NetInterface, AWildcardAddressMeansEveryInterface) {
  for (const char* host : {"0.0.0.0", "::"}) {
    auto i = interface_of(host);
    ASSERT_TRUE(i) << host << ": " << i.error().what();
    EXPECT_EQ(*i, "") << host;
  }
}

TEST(NetInterface, AnAddressOfNoInterfaceHereIsRefusedNamingIt) {
  // A documentation address (RFC 5737): compared with this machine's addresses, never contacted.
  for (const char* host : {"203.0.113.7", "no-such-host.invalid"}) {
    auto i = interface_of(host);
    ASSERT_FALSE(i) << host;
    EXPECT_EQ(i.error().code(), errc::invalid_argument);
    EXPECT_NE(i.error().message().find(std::string("host '") + host + "'"), std::string::npos) << i.error().message();
  }
}

}  // namespace
}  // namespace troupe
