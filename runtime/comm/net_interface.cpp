#include "runtime/comm/net_interface.hpp"

#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

namespace troupe {
namespace {

bool same_address(const sockaddr* a, const sockaddr* b) {
  if (a->sa_family != b->sa_family) return false;
  if (a->sa_family == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr == reinterpret_cast<const sockaddr_in*>(b)->sin_addr.s_addr;
  if (a->sa_family == AF_INET6)
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr,
                       sizeof(in6_addr)) == 0;
  return false;
}

bool is_wildcard(const sockaddr* a) {
  if (a->sa_family == AF_INET) return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (a->sa_family == AF_INET6)
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, &in6addr_any, sizeof(in6_addr)) == 0;
  return false;
}

}  // namespace

expected<std::string> interface_of(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int r = getaddrinfo(host.c_str(), nullptr, &hints, &found); r != 0)
    return make_error(errc::invalid_argument, "host '" + host + "' does not resolve: " + gai_strerror(r));
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addrs(found, freeaddrinfo);
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0)
    return make_error(errc::unavailable, std::string("cannot list the network interfaces: ") + std::strerror(errno));
  const std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> interfaces(ifs, freeifaddrs);
  for (const addrinfo* a = found; a; a = a->ai_next) {
    if (is_wildcard(a->ai_addr)) return std::string();
    for (const ifaddrs* i = ifs; i; i = i->ifa_next)
      if (i->ifa_addr && same_address(i->ifa_addr, a->ai_addr)) return std::string(i->ifa_name);
  }
  return make_error(errc::invalid_argument, "host '" + host + "' is no address of this machine's network interfaces");
}

}  // namespace troupe
