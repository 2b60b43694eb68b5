#pragma once
// The UCX communicator's insides, shared by its two halves: ucx_communicator_setup.cpp (UCX set-up,
// finding and greeting the peers, teardown) and ucx_communicator.cpp (transfers and collectives).
// Private to runtime/comm.

#include <ucp/api/ucp.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/comm/ucx_communicator.hpp"

namespace troupe::ucx_detail {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Tags carry the channel, the source rank and a per-pair sequence number, so that a receive matches
// exactly the message it expects: [63..60] channel + 1, [59..48] source rank, [47..0] sequence.
enum channel : int { p2p = 0, collective = 1, n_channels = 2 };
// Hellos have a channel of their own, outside the per-pair sequences.
constexpr int hello_channel = 2;
constexpr int max_world = 1 << 12;
constexpr ucp_tag_t full_mask = ~ucp_tag_t{0};
inline ucp_tag_t make_tag(int ch, int source, uint64_t seq) {
  return (ucp_tag_t{1} + static_cast<ucp_tag_t>(ch)) << 60 | static_cast<ucp_tag_t>(source) << 48 |
         (seq & ((ucp_tag_t{1} << 48) - 1));
}

// The hello each rank sends to each peer once connected: who it is, how large it believes the group
// is, and the instance id it published with its address; little-endian, behind a magic and a version
// so that a stranger or an older build is refused.
constexpr uint32_t hello_magic = 0x5452'5558;  // "TRUX"
constexpr uint32_t hello_version = 2;          // 2: worker addresses and instance ids
constexpr size_t hello_bytes = 24;
using hello_buffer = std::array<uint8_t, hello_bytes>;
struct hello {
  uint32_t magic = hello_magic, version = hello_version, rank = 0, world = 0;
  uint64_t instance = 0;
};
hello_buffer encode(const hello& h);
hello decode(const hello_buffer& b);

// Busy-polling answers fastest, but a rank that waits for a pipeline stage's whole forward pass
// would steal a core from it: after this long without progress the wait sleeps on UCX's event fd.
constexpr auto spin_before_sleep = std::chrono::microseconds(100);
// Longest single sleep, so that deadlines are seen even if an event is missed.
constexpr milliseconds longest_sleep{50};
// Fetching an address or connecting again backs off from the first to the last delay, doubling.
constexpr milliseconds first_retry{10}, longest_retry{1000};
// A peer connected to but silent has its address fetched again this often (it may have changed).
constexpr milliseconds recheck_interval{1000};
// How long the teardown of a failed request or endpoint may take before it is abandoned.
constexpr milliseconds teardown_grace{2000};

inline std::string ms_text(milliseconds d) { return std::to_string(d.count()) + " ms"; }

// One UCX request: in flight (handle), or finished with a status.
struct op {
  void* handle = nullptr;
  ucs_status_t status = UCS_INPROGRESS;

  void start(ucs_status_ptr_t p);
  bool started() const { return handle || status != UCS_INPROGRESS; }
  /// Whether nothing is in flight (never started, or finished: status says how); frees the request
  /// when it has just finished.
  bool poll();
  /// Frees a request still in flight (after its endpoint or worker gave up on it); back to unstarted.
  void abandon();
};

// Where the connection to one peer stands while the group forms.
struct greeting {
  uint64_t instance = 0;  // the peer's instance id, from the address this rank connected to
  hello_buffer hello_out{}, hello_in{};
  op hello_send, hello_recv;
  bool received = false;       // a hello from the peer has arrived and was checked
  uint64_t heard_instance = 0;  // the instance id in the peer's latest hello
  steady::time_point next_try{}, recheck_at{};
  milliseconds backoff = first_retry;
  std::string last_error = "its address was never published";
};

// The endpoint to one peer, and where each direction of each channel stands.
struct link {
  int rank = -1;
  std::string where;  // "rank 2 (node 'b')", for messages
  ucp_ep_h ep = nullptr;
  ucs_status_t failure = UCS_OK;  // set by UCX's error handler or when a call gave up on this peer
  std::string failure_reason;
  std::array<uint64_t, n_channels> send_seq{}, recv_seq{};
  greeting setup;

  bool failed() const { return failure != UCS_OK; }
  void fail(ucs_status_t s, std::string reason) {
    if (failed()) return;
    failure = s;
    failure_reason = std::move(reason);
  }
};

// One tagged transfer of a call: its request, its peer and, for a receive, what it must deliver.
struct transfer {
  op request;
  link* peer = nullptr;
  bool receive = false;
  size_t bytes = 0;
  ucp_tag_recv_info_t info{};
};

class ucx_communicator final : public communicator {
 public:
  static expected<std::unique_ptr<communicator>> create(const ucx_options& opts);
  ~ucx_communicator() override;
  ucx_communicator(const ucx_communicator&) = delete;
  ucx_communicator& operator=(const ucx_communicator&) = delete;

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_; }
  buffer_space buffers() const noexcept override { return buffer_space::host; }

  status all_reduce_sum(float* data, size_t n) override;
  status send(const float* data, size_t n, int peer) override;
  status recv(float* data, size_t n, int peer) override;

 private:
  ucx_communicator() = default;

  // ---- set-up and teardown (ucx_communicator_setup.cpp) ----
  /// UCX context and worker, restricted to the interface of opts.host.
  status init(const ucx_options& opts);
  /// Publishes this rank's address, then connects to and greets every peer.
  status connect_all(ucx_address_book& book, steady::time_point deadline);
  /// Fetches the peer's address and connects to it, sending the hello; on failure, schedules a retry.
  void try_connect(ucx_address_book& book, link& l);
  /// Posts the receive of the peer's next hello.
  void await_hello(link& l);
  /// Looks at the peer's hello once its receive ended (with `length` bytes); false (and setup_error_)
  /// when it refuses the group.
  bool check_hello(link& l, ucs_status_t status, size_t length);
  /// Fetches the address of a connected but silent peer again; reconnects if it changed.
  void recheck_address(ucx_address_book& book, link& l);
  /// Whether the link is connected and greeted both ways.
  bool greeted(link& l);
  /// Closes the link's endpoint and schedules a new attempt (a stale address or a lost connection).
  void reconnect_later(link& l, std::string why);
  /// A refused peer gets this rank's hello (it refuses too, instead of retrying) before the worker goes.
  void answer_before_refusing(ucx_address_book& book, link& l);
  /// Closes the links' endpoints, flushing the healthy ones, and waits (briefly) for their requests.
  void close_endpoints(std::span<link* const> links);
  /// Progresses the worker once, or sleeps on its event fd once it has been idle a while.
  void progress(steady::time_point deadline);

  // ---- transfers (ucx_communicator.cpp) ----
  status check_peer(int peer, const char* what) const;
  void post_send(transfer& t, link& l, channel ch, const void* data, size_t bytes);
  void post_recv(transfer& t, link& l, channel ch, void* data, size_t bytes);
  /// Waits for every transfer of one call; on failure or timeout gives up on the peers still pending.
  status wait(std::span<transfer> ts, const std::string& what);
  /// Fails the call: failed (or, when null, a timeout) names the reason.
  status give_up(std::span<transfer> ts, const std::string& what, const transfer* failed);
  status all_to_all(float* data, size_t n);
  status reduce_scatter_all_gather(float* data, size_t n);
  /// out[0, n) = sum over ranks k = 0..world-1, in that order, of (k == rank ? own : other(k))[0, n).
  void sum_in_rank_order(float* out, const float* own, const float* other, size_t stride, size_t n) const;

  std::string self() const;
  std::string where(int rank) const;

  int rank_ = 0, world_ = 1;
  milliseconds timeout_{30000}, connect_timeout_{60000};
  std::vector<std::string> names_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;
  uint64_t instance_ = 0;  // published with this rank's address, sent in its hellos
  std::string device_;     // the interface UCX is restricted to ("" when it is not)
  steady::time_point last_progress_{};
  std::vector<std::unique_ptr<link>> peers_;  // by rank; null for this rank
  std::string setup_error_;                   // a peer's view of the group differs: fatal
  std::vector<float> scratch_;
};

}  // namespace troupe::ucx_detail
