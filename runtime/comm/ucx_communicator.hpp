#pragma once
// The communicator over UCX, for shards in separate processes or machines, on host memory. UCX
// picks the transport among those that report a dead peer (UCP_ERR_HANDLING_MODE_PEER): with UCX
// 1.13 that is TCP, loopback included, since its shared-memory transports do not. UCX_TLS narrows
// the choice (it must leave tcp in), UCX_NET_DEVICES picks the interface. Built only where UCX is
// found (TROUPE_HAVE_UCX); elsewhere make_ucx_communicator says so.
//
// Ranks connect over UCX's socket-address API: every rank but 0 listens on its own entry of `peers`
// and rank i connects to every rank j > i, so each pair has one endpoint. A hello in each direction
// carries the rank and the world size; a peer whose view of the group differs is refused.
// Messages are tagged with the sender's rank, a channel (point-to-point or collective) and a
// per-pair sequence number, so that a receive takes exactly the message it expects.
//
// all_reduce_sum: below 256 KiB every rank sends its buffer to every other and each sums the
// world's buffers in rank order 0..world-1 (one round); from 256 KiB on, rank c sums chunk c of
// every buffer in that order and sends the result to the others (reduce-scatter, all-gather: two
// rounds, 2(w-1)/w of the buffer out per rank). Either way the bits are the same on every rank.
//
// Not thread-safe: one thread at a time uses a communicator (each call drives UCX's progress engine
// itself, spinning briefly, then sleeping on its event fd). After a call fails (a peer died or timed
// out), the peers it was waiting on stay failed and later calls with them fail at once: make a new
// group.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/communicator.hpp"

namespace troupe {

/// Where the ranks of a UCX group listen and how long they wait.
struct ucx_options {
  int rank = 0;
  /// "host:port" of every rank, this rank's own included: where that rank listens (IPv4; a name is
  /// resolved). This rank binds its own entry, so the host must be an address of this machine.
  std::vector<std::string> peers;
  /// Peers may start late: connecting retries with backoff until this long has passed.
  std::chrono::milliseconds connect_timeout{60000};
  /// One send, recv or all_reduce_sum waits at most this long for its peers.
  std::chrono::milliseconds timeout{30000};
};

/// Joins the group as opts.rank; blocks until connected to every other rank. Buffers are host memory.
/// Errors: invalid_argument (bad options), unavailable (a peer never came, refused us, died or timed
/// out; the message names it and its address).
expected<std::unique_ptr<communicator>> make_ucx_communicator(const ucx_options& opts);

/// Whether this build has UCX.
bool ucx_available() noexcept;

}  // namespace troupe
