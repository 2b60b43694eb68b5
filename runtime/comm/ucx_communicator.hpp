#pragma once
// The communicator over UCX, for shards in separate processes or machines, on host memory. UCX
// picks the transport among those that report a dead peer (UCP_ERR_HANDLING_MODE_PEER): with UCX
// 1.13 that is TCP, loopback included, since its shared-memory transports do not. UCX_TLS narrows
// the choice (it must leave tcp in); ucx_options::host (else UCX_NET_DEVICES) picks the interface. Built only where UCX is
// found (TROUPE_HAVE_UCX); elsewhere make_ucx_communicator says so.
//
// Ranks find each other through an address book (ucx_address_book) rather than a listening socket:
// each rank publishes its UCX worker address and fetches the others', then connects to each from its
// address and sends a hello (rank, world size, and the instance id published with its address) on
// a tag of its own; a peer whose view of the group differs is refused. A hello from an instance
// other than the one this rank connected to means it fetched a stale address (the peer rebuilt its
// group): it fetches again and reconnects. No troupe code listens: UCX's TCP transport accepts its
// own connections on the devices it uses, which `host` restricts to the one interface that carries
// that address (UCX_NET_DEVICES, set on this communicator's UCX configuration only).
//
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

/// How the ranks of a group learn each other's UCX worker addresses. UCX trusts whoever holds an
/// address, so the book must be one that strangers cannot write to: the cluster carries addresses over
/// the nodes' authenticated control plane. Addresses are opaque bytes.
class ucx_address_book {
 public:
  virtual ~ucx_address_book() = default;
  /// Makes this rank's address known to the group, replacing an earlier one.
  virtual status publish(int rank, const std::string& address) = 0;
  /// Rank's latest address. Any error (not published yet, its keeper unreachable) is retried until
  /// the connect timeout; the last one is reported then.
  virtual expected<std::string> fetch(int rank) = 0;
};

/// An address book in a directory of this machine (processes of one user: tests, benchmarks): rank
/// r's address is the file `r` there, replaced whole (written aside, then renamed).
std::shared_ptr<ucx_address_book> make_directory_address_book(std::string dir);

/// Who the ranks of a UCX group are, where they find each other, and how long they wait.
struct ucx_options {
  int rank = 0;
  int world_size = 1;
  /// Where the ranks' worker addresses are exchanged; required when world_size > 1.
  std::shared_ptr<ucx_address_book> addresses;
  /// An address of this machine (IPv4 or IPv6, or a name resolving to one): UCX uses only the network
  /// interface that carries it, so nothing of UCX listens elsewhere. Empty, 0.0.0.0 or "::": every
  /// interface UCX picks (UCX_NET_DEVICES may narrow it).
  std::string host;
  /// What to call each rank in messages, e.g. the node it runs on; empty: "rank k" alone.
  std::vector<std::string> names;
  /// Peers may start late: fetching their addresses and connecting retry until this long has passed.
  std::chrono::milliseconds connect_timeout{60000};
  /// One send, recv or all_reduce_sum waits at most this long for its peers.
  std::chrono::milliseconds timeout{30000};
};

/// Joins the group as opts.rank; blocks until connected to every other rank. Buffers are host memory.
/// Errors: invalid_argument (bad options, a host that is no address of this machine), unavailable (a
/// peer never came, refused us, died or timed out; the message names it).
expected<std::unique_ptr<communicator>> make_ucx_communicator(const ucx_options& opts);

/// Whether this build has UCX.
bool ucx_available() noexcept;

}  // namespace troupe
