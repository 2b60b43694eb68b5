// The cluster handshake a peer sends before anything else (cluster/handshake.cpp): its bytes as a
// Hello (answer_hello, the accepting side) and as a HelloReply (check_reply, the connecting side).
// An answer must always be a HelloReply this node can read back.
#include "cluster/handshake.hpp"
#include "fuzz/fuzz_support.hpp"

using namespace troupe;

namespace {

const cluster::wire::Hello& mine() {
  static const cluster::wire::Hello h = [] {
    cluster::wire::Hello m;
    m.set_protocol_version(2);
    m.set_build("troupe fuzz");
    m.set_node("head");
    m.set_cluster("demo");
    m.set_config_digest("0123456789abcdef");
    for (const char* t : {"troupe::sampling_params", "troupe::step_plan", "troupe::router_actor"}) m.add_message_types(t);
    return m;
  }();
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string answer = cluster::answer_hello(mine(), bytes);
  cluster::wire::HelloReply reply;
  if (!reply.ParseFromString(answer)) std::abort();
  (void)cluster::check_reply(mine(), bytes);
  return 0;
}
