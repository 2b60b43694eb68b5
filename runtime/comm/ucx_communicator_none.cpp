// make_ucx_communicator in a build without UCX (runtime/CMakeLists.txt picks this file or
// ucx_communicator.cpp).
#include "runtime/comm/ucx_communicator.hpp"

namespace troupe {

expected<std::unique_ptr<communicator>> make_ucx_communicator(const ucx_options&) {
  return make_error(errc::unavailable, "ucx: this build has no UCX (install libucx-dev and rebuild)");
}

bool ucx_available() noexcept { return false; }

}  // namespace troupe
