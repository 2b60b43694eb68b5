#pragma once
// Which network interface of this machine carries an address: the data plane listens only there.

#include <string>

#include "runtime/core/error.hpp"

namespace troupe {

/// The interface ("lo", "eth0") that carries `host`, an IPv4 or IPv6 address or a name resolving to
/// one of this machine's addresses; "" for a wildcard address (0.0.0.0, ::), which means every
/// interface. Errors: invalid_argument when no interface of this machine has the address (or the
/// name does not resolve), naming the host.
expected<std::string> interface_of(const std::string& host);

}  // namespace troupe
