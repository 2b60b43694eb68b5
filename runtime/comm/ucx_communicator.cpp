#include "runtime/comm/ucx_communicator.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "runtime/core/log.hpp"

namespace troupe {
namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Tags carry the channel, the source rank and a per-pair sequence number, so that a receive matches
// exactly the message it expects: [63..60] channel, [59..48] source rank, [47..0] sequence.
enum channel : int { p2p = 0, collective = 1, n_channels = 2 };
constexpr int max_world = 1 << 12;
constexpr ucp_tag_t full_mask = ~ucp_tag_t{0};
ucp_tag_t make_tag(channel ch, int source, uint64_t seq) {
  return (ucp_tag_t{1} + static_cast<ucp_tag_t>(ch)) << 60 | static_cast<ucp_tag_t>(source) << 48 |
         (seq & ((ucp_tag_t{1} << 48) - 1));
}

// The hello each side of a new endpoint sends once: who it is and how large it believes the group
// is, little-endian, behind a magic and a version so that a stranger or an older build is refused.
constexpr uint32_t hello_magic = 0x5452'5558;  // "TRUX"
constexpr uint32_t hello_version = 1;
constexpr size_t hello_bytes = 16;
using hello_buffer = std::array<uint8_t, hello_bytes>;
struct hello {
  uint32_t magic = hello_magic, version = hello_version, rank = 0, world = 0;
};
hello_buffer encode(const hello& h) {
  hello_buffer b{};
  const uint32_t words[4] = {h.magic, h.version, h.rank, h.world};
  for (size_t w = 0; w < 4; ++w)
    for (size_t i = 0; i < 4; ++i) b[w * 4 + i] = static_cast<uint8_t>(words[w] >> (8 * i));
  return b;
}
hello decode(const hello_buffer& b) {
  uint32_t words[4] = {};
  for (size_t w = 0; w < 4; ++w)
    for (size_t i = 0; i < 4; ++i) words[w] |= static_cast<uint32_t>(b[w * 4 + i]) << (8 * i);
  return {words[0], words[1], words[2], words[3]};
}

// Busy-polling answers fastest, but a rank that waits for a pipeline stage's whole forward pass
// would steal a core from it: after this long without progress the wait sleeps on UCX's event fd.
constexpr auto spin_before_sleep = std::chrono::microseconds(100);
// Longest single sleep, so that deadlines are seen even if an event is missed.
constexpr milliseconds longest_sleep{50};
// Connection attempts back off from the first to the last delay, doubling.
constexpr milliseconds first_retry{10}, longest_retry{1000};
// How long the teardown of a failed request or endpoint may take before it is abandoned.
constexpr milliseconds teardown_grace{2000};
// Below this many bytes all_reduce_sum sends every rank's whole buffer to every rank (one round);
// from it on, a reduce-scatter then an all-gather (two rounds, 2(w-1)/w of the buffer each way).
constexpr size_t all_to_all_below_bytes = 256 << 10;
// Summation runs over blocks of this many floats, accumulated in a local array.
constexpr size_t sum_block = 1024;

struct address {
  std::string host, port, text;
};

expected<address> parse_address(const std::string& s) {
  const size_t colon = s.rfind(':');
  auto bad = [&](const char* why) {
    return make_error(errc::invalid_argument, "ucx: peer address \"" + s + "\" " + why + " (want host:port)");
  };
  if (colon == std::string::npos) return bad("has no port");
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.empty()) return bad("has no host");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(port) < 1 || std::stoi(port) > 65535)
    return bad("has no valid port");
  return address{std::move(host), std::move(port), s};
}

struct socket_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

expected<socket_address> resolve(const address& a) {
  addrinfo hints{};
  // IPv4: UCX 1.13's TCP transport did not connect over IPv6 loopback, even with UCX_TCP_AF_PRIO=inet6.
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int r = getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &found); r != 0)
    return make_error(errc::unavailable, "cannot resolve " + a.text + ": " + gai_strerror(r));
  socket_address out;
  std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
  out.length = found->ai_addrlen;
  freeaddrinfo(found);
  return out;
}

std::string to_string(const sockaddr_storage& sa) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  getnameinfo(reinterpret_cast<const sockaddr*>(&sa), sizeof sa, host, sizeof host, port, sizeof port,
              NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string(host) + ":" + port;
}

std::string ms_text(milliseconds d) { return std::to_string(d.count()) + " ms"; }

// One UCX request: in flight (handle), or finished with a status.
struct op {
  void* handle = nullptr;
  ucs_status_t status = UCS_INPROGRESS;

  void start(ucs_status_ptr_t p) {
    if (p == nullptr) {
      status = UCS_OK;
    } else if (UCS_PTR_IS_ERR(p)) {
      status = UCS_PTR_STATUS(p);
    } else {
      handle = p;
      status = UCS_INPROGRESS;
    }
  }
  bool started() const { return handle || status != UCS_INPROGRESS; }
  /// Whether nothing is in flight (never started, or finished: status says how); frees the request
  /// when it has just finished.
  bool poll() {
    if (!handle) return true;
    const ucs_status_t s = ucp_request_check_status(handle);
    if (s == UCS_INPROGRESS) return false;
    status = s;
    ucp_request_free(handle);
    handle = nullptr;
    return true;
  }
};

// The endpoint to one peer, and where each direction of each channel stands.
struct link {
  int rank = -1;  // -1 until an accepted peer's hello names it
  std::string where;  // "rank 2 (10.0.0.3:5000)", for messages
  ucp_ep_h ep = nullptr;
  ucs_status_t failure = UCS_OK;  // set by UCX's error handler or when a call gave up on this peer
  std::string failure_reason;
  std::array<uint64_t, n_channels> send_seq{}, recv_seq{};
  // Connection setup.
  hello_buffer hello_out{}, hello_in{};
  op hello_send, hello_recv;
  bool accepted = false;  // the peer connected to us (else we connected to it)

  bool failed() const { return failure != UCS_OK; }
  void fail(ucs_status_t s, std::string reason) {
    if (failed()) return;
    failure = s;
    failure_reason = std::move(reason);
  }
};

void on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* l = static_cast<link*>(arg);
  spdlog::debug("ucx: {}: endpoint failed: {}", l->where, ucs_status_string(status));
  l->fail(status, ucs_status_string(status));
}

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
  status init();
  ucs_status_t listen();
  status connect_all(steady::time_point deadline);
  void accept_pending();
  void advance_accepted(link& l);
  void linger_after_refusal();
  void start_attempt(int peer);
  void advance_attempt(int peer);
  void on_connected(std::unique_ptr<link> l);
  std::unique_ptr<link> take_setup_link(link* l);
  ucp_ep_h create_endpoint(ucp_ep_params_t params, link& l, ucs_status_t& status);
  void start_hello_exchange(link& l);

  /// Progresses the worker once, or sleeps on its event fd once it has been idle a while.
  void progress(steady::time_point deadline);
  /// Closes a link being set up (without a flush) and deletes it.
  void drop(link& l);
  /// Closes the links' endpoints, flushing the healthy ones, and waits (briefly) for their requests.
  void close_endpoints(std::span<link* const> links);

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
  std::string self() const { return "ucx: rank " + std::to_string(rank_); }
  std::string self_at() const { return self() + " (" + addresses_[static_cast<size_t>(rank_)].text + ")"; }

  int rank_ = 0, world_ = 1;
  milliseconds timeout_{30000}, connect_timeout_{60000};
  std::vector<address> addresses_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::optional<socket_address> listen_at_;  // where this rank listens until everyone has connected
  ucp_listener_h listener_ = nullptr;
  int event_fd_ = -1;
  steady::time_point last_progress_{};

  std::vector<std::unique_ptr<link>> peers_;  // by rank; null for this rank and before connecting
  // Endpoints being set up: accepted ones awaiting a hello, and this rank's connection attempts.
  std::vector<std::unique_ptr<link>> setup_links_;
  std::vector<ucp_conn_request_h> conn_requests_;  // from the listener, not yet accepted
  struct attempt {
    link* current = nullptr;  // in setup_links_ while in flight
    steady::time_point next_try{};
    milliseconds backoff = first_retry;
    std::string last_error = "no answer";
  };
  std::vector<attempt> attempts_;  // by rank, for ranks above this one
  std::string setup_error_;  // a peer's view of the group differs: fatal

  std::vector<float> scratch_;
};

expected<std::unique_ptr<communicator>> ucx_communicator::create(const ucx_options& opts) {
  const int world = static_cast<int>(opts.peers.size());
  if (world < 1 || world > max_world)
    return make_error(errc::invalid_argument, "ucx: a group has 1 to " + std::to_string(max_world) + " ranks, not " +
                                                  std::to_string(world));
  if (opts.rank < 0 || opts.rank >= world)
    return make_error(errc::invalid_argument, "ucx: rank " + std::to_string(opts.rank) + " is outside a group of " +
                                                  std::to_string(world));
  if (opts.timeout.count() <= 0 || opts.connect_timeout.count() <= 0)
    return make_error(errc::invalid_argument, "ucx: timeouts must be positive");
  std::unique_ptr<ucx_communicator> c(new ucx_communicator());
  c->rank_ = opts.rank;
  c->world_ = world;
  c->timeout_ = opts.timeout;
  c->connect_timeout_ = opts.connect_timeout;
  for (const std::string& p : opts.peers) {
    auto a = parse_address(p);
    if (!a) return unexpected{a.error()};
    c->addresses_.push_back(std::move(*a));
  }
  if (world == 1) return std::unique_ptr<communicator>(std::move(c));
  TROUPE_TRY(c->init());
  TROUPE_TRY(c->connect_all(steady::now() + opts.connect_timeout));
  spdlog::debug("ucx: rank {} of {} connected to its peers", c->rank_, c->world_);
  return std::unique_ptr<communicator>(std::move(c));
}

status ucx_communicator::init() {
  const std::string me = self_at();
  ucp_config_t* config = nullptr;
  // The UCX_* environment (UCX_TLS, UCX_NET_DEVICES, ...) is read here.
  if (const ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK)
    return make_error(errc::unavailable, me + ": read the UCX configuration: " + ucs_status_string(s));
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_STREAM | UCP_FEATURE_WAKEUP;
  params.estimated_num_eps = static_cast<size_t>(world_ - 1);
  const ucs_status_t s = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (s != UCS_OK) return make_error(errc::unavailable, me + ": UCX init: " + ucs_status_string(s));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (const ucs_status_t w = ucp_worker_create(context_, &wp, &worker_); w != UCS_OK)
    return make_error(errc::unavailable, me + ": UCX worker: " + ucs_status_string(w));
  if (const ucs_status_t e = ucp_worker_get_efd(worker_, &event_fd_); e != UCS_OK)
    return make_error(errc::unavailable, me + ": UCX worker event fd: " + ucs_status_string(e));

  // Rank i connects to the ranks above it, so every rank but 0 has someone to listen for.
  if (rank_ > 0) {
    auto listen_at = resolve(addresses_[static_cast<size_t>(rank_)]);
    if (!listen_at) return make_error(errc::invalid_argument, self() + ": " + listen_at.error().message());
    listen_at_ = *listen_at;
  }
  peers_.resize(static_cast<size_t>(world_));
  attempts_.resize(static_cast<size_t>(world_));
  last_progress_ = steady::now();
  return {};
}

ucs_status_t ucx_communicator::listen() {
  ucp_listener_params_t lp{};
  lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&listen_at_->storage);
  lp.sockaddr.addrlen = listen_at_->length;
  lp.conn_handler.cb = [](ucp_conn_request_h request, void* arg) {
    static_cast<ucx_communicator*>(arg)->conn_requests_.push_back(request);
  };
  lp.conn_handler.arg = this;
  return ucp_listener_create(worker_, &lp, &listener_);
}

ucp_ep_h ucx_communicator::create_endpoint(ucp_ep_params_t params, link& l, ucs_status_t& status) {
  // PEER error handling: a dead peer fails its requests (and calls on_endpoint_error) instead of
  // leaving them pending forever.
  params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = on_endpoint_error;
  params.err_handler.arg = &l;
  ucp_ep_h ep = nullptr;
  status = ucp_ep_create(worker_, &params, &ep);
  return status == UCS_OK ? ep : nullptr;
}

void ucx_communicator::start_hello_exchange(link& l) {
  l.hello_out = encode(hello{.rank = static_cast<uint32_t>(rank_), .world = static_cast<uint32_t>(world_)});
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_STREAM_RECV_FLAG_WAITALL;
  size_t length = 0;
  l.hello_recv.start(ucp_stream_recv_nbx(l.ep, l.hello_in.data(), hello_bytes, &length, &p));
  // The acceptor answers only once the connector's hello has been checked (advance_accepted).
  if (!l.accepted) {
    ucp_request_param_t sp{};
    l.hello_send.start(ucp_stream_send_nbx(l.ep, l.hello_out.data(), hello_bytes, &sp));
  }
}

status ucx_communicator::connect_all(steady::time_point deadline) {
  const std::string me = self_at();
  std::string listen_error;
  steady::time_point next_listen{};
  milliseconds listen_backoff = first_retry;
  for (;;) {
    if (listen_at_ && !listener_ && steady::now() >= next_listen) {
      // A port still held by the connections of a previous run (TIME_WAIT, unless
      // UCX_TCP_CM_REUSEADDR=y) frees up within a minute: retry; any other failure is final.
      const ucs_status_t s = listen();
      if (s == UCS_ERR_BUSY) {
        listen_error = std::string("cannot listen there: ") + ucs_status_string(s) +
                       " (the port is taken; a previous run's connections may hold it for a minute unless "
                       "UCX_TCP_CM_REUSEADDR=y)";
        next_listen = steady::now() + listen_backoff;
        listen_backoff = std::min(listen_backoff * 2, longest_retry);
      } else if (s != UCS_OK) {
        return make_error(errc::unavailable, me + ": cannot listen there: " + ucs_status_string(s));
      }
    }
    progress(deadline);
    accept_pending();
    // Index loops: advancing may move a link out of setup_links_.
    for (size_t i = 0; i < setup_links_.size();) {
      link* l = setup_links_[i].get();
      if (l->accepted) advance_accepted(*l);
      if (i < setup_links_.size() && setup_links_[i].get() == l) ++i;
    }
    for (int j = rank_ + 1; j < world_; ++j) {
      if (peers_[static_cast<size_t>(j)]) continue;
      if (attempts_[static_cast<size_t>(j)].current) {
        advance_attempt(j);
      } else if (steady::now() >= attempts_[static_cast<size_t>(j)].next_try) {
        start_attempt(j);
      }
    }
    if (!setup_error_.empty()) {
      linger_after_refusal();
      return make_error(errc::unavailable, setup_error_);
    }
    bool all = true;
    for (int j = 0; j < world_; ++j) all = all && (j == rank_ || peers_[static_cast<size_t>(j)]);
    if (all) break;
    if (steady::now() >= deadline) {
      std::string missing;
      for (int j = 0; j < world_; ++j) {
        if (j == rank_ || peers_[static_cast<size_t>(j)]) continue;
        const std::string& at = addresses_[static_cast<size_t>(j)].text;
        missing += missing.empty() ? "" : "; ";
        missing += j > rank_ ? "rank " + std::to_string(j) + " at " + at + " did not answer (" +
                                   attempts_[static_cast<size_t>(j)].last_error + ")"
                             : "rank " + std::to_string(j) + " (" + at + ") never connected";
      }
      if (listen_at_ && !listener_) missing = listen_error + "; " + missing;
      return make_error(errc::unavailable, me + ": no connection within " + ms_text(connect_timeout_) + ": " + missing);
    }
  }
  // Everyone who connects to this rank has: the port is free again.
  if (listener_) {
    ucp_listener_destroy(listener_);
    listener_ = nullptr;
    listen_at_.reset();
  }
  return {};
}

void ucx_communicator::accept_pending() {
  std::vector<ucp_conn_request_h> requests;
  requests.swap(conn_requests_);
  for (ucp_conn_request_h request : requests) {
    ucp_conn_request_attr_t attr{};
    attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
    std::string from = "an unknown address";
    if (ucp_conn_request_query(request, &attr) == UCS_OK) from = to_string(attr.client_address);
    auto l = std::make_unique<link>();
    l->accepted = true;
    l->where = "a peer connecting from " + from;
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
    params.conn_request = request;
    ucs_status_t s = UCS_OK;
    l->ep = create_endpoint(params, *l, s);
    if (!l->ep) {
      spdlog::warn("{}: cannot accept {}: {}", self(), l->where, ucs_status_string(s));
      continue;
    }
    start_hello_exchange(*l);
    setup_links_.push_back(std::move(l));
  }
}

void ucx_communicator::advance_accepted(link& l) {
  l.hello_recv.poll();
  if (l.hello_send.started()) {
    if (!l.hello_send.poll()) return;
    if (l.hello_send.status == UCS_OK && !l.failed()) {
      on_connected(take_setup_link(&l));
    } else {
      spdlog::debug("{}: answering {} failed", self(), l.where);
      drop(l);
    }
    return;
  }
  if (l.failed() || (l.hello_recv.status != UCS_INPROGRESS && l.hello_recv.status != UCS_OK)) {
    spdlog::debug("{}: {} went away before its hello", self(), l.where);
    drop(l);
    return;
  }
  if (l.hello_recv.status != UCS_OK) return;
  const hello h = decode(l.hello_in);
  if (h.magic != hello_magic || h.version != hello_version) {
    spdlog::warn("{}: {} is not a troupe UCX peer of this version: dropped", self(), l.where);
    drop(l);
    return;
  }
  const std::string me = self_at();
  if (h.world != static_cast<uint32_t>(world_)) {
    // Answer anyway, so that the peer reports the mismatch too rather than retrying until its timeout.
    setup_error_ = me + ": " + l.where + " is rank " + std::to_string(h.rank) + " of a group of " +
                   std::to_string(h.world) + " ranks, but this rank's group has " + std::to_string(world_) +
                   ": the peer lists (world size) must be the same on every rank";
  } else if (h.rank >= static_cast<uint32_t>(rank_)) {
    setup_error_ = me + ": " + l.where + " says it is rank " + std::to_string(h.rank) +
                   ", but only lower ranks connect to this one (is a rank given to two processes?)";
  }
  l.rank = static_cast<int>(h.rank);
  if (setup_error_.empty())
    l.where = "rank " + std::to_string(l.rank) + " (" + addresses_[static_cast<size_t>(l.rank)].text + ")";
  ucp_request_param_t sp{};
  l.hello_send.start(ucp_stream_send_nbx(l.ep, l.hello_out.data(), hello_bytes, &sp));
}

void ucx_communicator::linger_after_refusal() {
  // A peer answered with a refusal (advance_accepted) must read it before this rank closes the
  // endpoint: the disconnect travels on the connection manager's own socket and can overtake the
  // answer, leaving the peer to retry until its timeout. The peer closes its side once it has read
  // the answer; wait for that, briefly.
  const steady::time_point until = steady::now() + teardown_grace;
  auto waiting = [&] {
    return std::any_of(setup_links_.begin(), setup_links_.end(), [](const std::unique_ptr<link>& l) {
      return l->accepted && l->hello_send.started() && !l->failed();
    });
  };
  while (waiting() && steady::now() < until) progress(until);
}

void ucx_communicator::start_attempt(int peer) {
  attempt& a = attempts_[static_cast<size_t>(peer)];
  const address& at = addresses_[static_cast<size_t>(peer)];
  auto target = resolve(at);
  if (!target) {
    a.last_error = target.error().message();
    a.next_try = steady::now() + a.backoff;
    a.backoff = std::min(a.backoff * 2, longest_retry);
    return;
  }
  auto l = std::make_unique<link>();
  l->rank = peer;
  l->where = "rank " + std::to_string(peer) + " (" + at.text + ")";
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&target->storage);
  params.sockaddr.addrlen = target->length;
  ucs_status_t s = UCS_OK;
  l->ep = create_endpoint(params, *l, s);
  if (!l->ep) {
    a.last_error = ucs_status_string(s);
    a.next_try = steady::now() + a.backoff;
    a.backoff = std::min(a.backoff * 2, longest_retry);
    return;
  }
  start_hello_exchange(*l);
  a.current = l.get();
  setup_links_.push_back(std::move(l));
}

void ucx_communicator::advance_attempt(int peer) {
  attempt& a = attempts_[static_cast<size_t>(peer)];
  link& l = *a.current;
  const bool sent = l.hello_send.poll(), received = l.hello_recv.poll();
  const ucs_status_t bad = l.failed()                                               ? l.failure
                           : sent && l.hello_send.status != UCS_OK                  ? l.hello_send.status
                           : received && l.hello_recv.status != UCS_OK              ? l.hello_recv.status
                                                                                    : UCS_OK;
  if (bad != UCS_OK) {
    // The peer is not listening yet (or went away while answering): try again later.
    a.last_error = ucs_status_string(bad);
    spdlog::debug("{}: connecting to {}: {}; retrying in {} ms", self(), l.where, a.last_error, a.backoff.count());
    a.current = nullptr;
    a.next_try = steady::now() + a.backoff;
    a.backoff = std::min(a.backoff * 2, longest_retry);
    drop(l);
    return;
  }
  if (!sent || !received) return;
  const hello h = decode(l.hello_in);
  const std::string me = self_at();
  if (h.magic != hello_magic || h.version != hello_version) {
    setup_error_ = me + ": " + l.where + " is not a troupe UCX peer of this version";
  } else if (h.world != static_cast<uint32_t>(world_)) {
    setup_error_ = me + ": " + l.where + " has a group of " + std::to_string(h.world) +
                   " ranks, but this rank's group has " + std::to_string(world_) +
                   ": the peer lists (world size) must be the same on every rank";
  } else if (h.rank != static_cast<uint32_t>(peer)) {
    setup_error_ = me + ": " + l.where + " answered as rank " + std::to_string(h.rank) +
                   ": the peer lists must be the same on every rank";
  }
  if (!setup_error_.empty()) return;  // the link stays in setup_links_; the destructor closes it
  a.current = nullptr;
  on_connected(take_setup_link(&l));
}

std::unique_ptr<link> ucx_communicator::take_setup_link(link* l) {
  auto it = std::find_if(setup_links_.begin(), setup_links_.end(), [&](const auto& p) { return p.get() == l; });
  std::unique_ptr<link> out = std::move(*it);
  setup_links_.erase(it);
  return out;
}

void ucx_communicator::on_connected(std::unique_ptr<link> l) {
  auto& slot = peers_[static_cast<size_t>(l->rank)];
  if (slot) {
    // The peer connected again, so it gave up on the first endpoint: keep the newer one.
    spdlog::debug("{}: {} connected again", self(), l->where);
    drop(*slot);
  }
  spdlog::debug("{}: connected to {}", self(), l->where);
  slot = std::move(l);
}

void ucx_communicator::progress(steady::time_point deadline) {
  const steady::time_point now = steady::now();
  if (ucp_worker_progress(worker_) != 0) {
    last_progress_ = now;
    return;
  }
  if (now - last_progress_ < spin_before_sleep) return;
  // Arming fails with BUSY when events are already pending: progress again at once.
  if (ucp_worker_arm(worker_) != UCS_OK) return;
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
  pollfd fd{event_fd_, POLLIN, 0};
  poll(&fd, 1, static_cast<int>(std::clamp(left, milliseconds(0), longest_sleep).count()));
}

void ucx_communicator::drop(link& l) {
  l.fail(UCS_ERR_CANCELED, "dropped while connecting");
  link* const one[] = {&l};
  close_endpoints(one);
  // A link still being set up is owned by setup_links_: it ends here.
  auto it = std::find_if(setup_links_.begin(), setup_links_.end(), [&](const auto& p) { return p.get() == &l; });
  if (it != setup_links_.end()) setup_links_.erase(it);
}

void ucx_communicator::close_endpoints(std::span<link* const> links) {
  // Healthy endpoints are flushed (what was sent arrives) then closed; failed ones are released.
  std::vector<op> closes;
  for (link* l : links) {
    if (!l->ep) continue;
    ucp_request_param_t p{};
    if (l->failed()) {
      p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    }
    closes.emplace_back().start(ucp_ep_close_nbx(l->ep, &p));
    l->ep = nullptr;
  }
  const steady::time_point until = steady::now() + std::min<milliseconds>(timeout_, teardown_grace);
  auto pending = [&] {
    bool any = false;
    for (op& o : closes) any = !o.poll() || any;
    for (link* l : links) any = !(l->hello_send.poll() && l->hello_recv.poll()) || any;
    return any;
  };
  while (pending() && steady::now() < until) progress(until);
  for (op& o : closes)
    if (o.handle) ucp_request_free(o.handle);
  for (link* l : links) {
    for (op* o : {&l->hello_send, &l->hello_recv}) {
      if (o->handle) ucp_request_free(o->handle);
      o->handle = nullptr;
    }
  }
}

ucx_communicator::~ucx_communicator() {
  if (!worker_) {
    if (context_) ucp_cleanup(context_);
    return;
  }
  if (listener_) {
    for (ucp_conn_request_h r : conn_requests_) ucp_listener_reject(listener_, r);
    ucp_listener_destroy(listener_);
  }
  std::vector<link*> links;
  for (auto& p : peers_)
    if (p) links.push_back(p.get());
  for (auto& p : setup_links_) links.push_back(p.get());
  close_endpoints(links);
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
}

status ucx_communicator::check_peer(int peer, const char* what) const {
  if (peer < 0 || peer >= world_ || peer == rank_)
    return make_error(errc::invalid_argument, self() + " cannot " + what + " rank " + std::to_string(peer) +
                                                  " of " + std::to_string(world_));
  // A failed peer whose endpoint is still open may have left messages behind: they are received.
  const link& l = *peers_[static_cast<size_t>(peer)];
  if (l.failed() && !l.ep)
    return make_error(errc::unavailable, self() + " cannot " + what + " " + l.where + ": it failed earlier (" +
                                             l.failure_reason + ")");
  return {};
}

void ucx_communicator::post_send(transfer& t, link& l, channel ch, const void* data, size_t bytes) {
  t.peer = &l;
  t.bytes = bytes;
  ucp_request_param_t p{};
  t.request.start(ucp_tag_send_nbx(l.ep, data, bytes, make_tag(ch, rank_, l.send_seq[ch]++), &p));
}

void ucx_communicator::post_recv(transfer& t, link& l, channel ch, void* data, size_t bytes) {
  t.peer = &l;
  t.receive = true;
  t.bytes = bytes;
  // Always a request, whose test reports the length that arrived: UCX 1.13 leaves recv_info empty
  // on an immediate completion (openucx/ucx#9425).
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  t.request.start(ucp_tag_recv_nbx(worker_, data, bytes, make_tag(ch, l.rank, l.recv_seq[ch]++), full_mask, &p));
}

status ucx_communicator::wait(std::span<transfer> ts, const std::string& what) {
  const steady::time_point deadline = steady::now() + timeout_;
  last_progress_ = steady::now();  // spin a while before sleeping: peers of a collective arrive close together
  bool drained = false;
  for (;;) {
    bool done = true;
    const transfer* failed = nullptr;
    for (transfer& t : ts) {
      if (t.request.handle && t.receive) {
        // Polled through the tag API, which also reports the length that arrived.
        const ucs_status_t s = ucp_tag_recv_request_test(t.request.handle, &t.info);
        if (s != UCS_INPROGRESS) {
          t.request.status = s;
          ucp_request_free(t.request.handle);
          t.request.handle = nullptr;
        }
      }
      if (!t.request.poll()) {
        done = false;
        // A receive is posted on the worker, not the endpoint: a dead sender must be noticed here.
        if (t.peer->failed() && !failed) failed = &t;
      } else if (t.request.status != UCS_OK && !failed) {
        failed = &t;
      }
    }
    if (done && !failed) break;
    if (failed && failed->receive && failed->request.handle && !drained) {
      // A peer that sent and then left: what it sent may still wait in a transport's queue.
      drained = true;
      while (ucp_worker_progress(worker_) != 0) {
      }
      continue;
    }
    if (!failed && steady::now() < deadline) {
      progress(deadline);
      continue;
    }
    return give_up(ts, what, failed);
  }
  for (const transfer& t : ts) {
    if (t.receive && t.info.length != t.bytes)
      return make_error(errc::invalid_argument, self() + ": " + what + ": " + t.peer->where + " sent " +
                                                    std::to_string(t.info.length / sizeof(float)) +
                                                    " floats, not " + std::to_string(t.bytes / sizeof(float)));
  }
  return {};
}

status ucx_communicator::give_up(std::span<transfer> ts, const std::string& what, const transfer* failed) {
  // The failed peer and the peers still pending are out of step with this rank from now on (a
  // message may be half-sent): mark them failed and close their endpoints, which ends their requests.
  std::string reason;
  link* culprit = failed ? failed->peer : nullptr;
  if (culprit) {
    if (!culprit->failed()) culprit->fail(failed->request.status, ucs_status_string(failed->request.status));
    reason = culprit->where + " failed (" + culprit->failure_reason + ")";
  } else {
    std::string waiting;
    for (const transfer& t : ts)
      if (t.request.handle && waiting.find(t.peer->where) == std::string::npos)
        waiting += (waiting.empty() ? "" : ", ") + t.peer->where;
    reason = "timed out after " + ms_text(timeout_) + " waiting for " + waiting;
  }
  std::vector<link*> abandoned;
  for (transfer& t : ts) {
    if ((t.request.handle || t.peer == culprit) &&
        std::find(abandoned.begin(), abandoned.end(), t.peer) == abandoned.end())
      abandoned.push_back(t.peer);
  }
  for (link* l : abandoned)
    if (l != culprit) l->fail(culprit ? UCS_ERR_CANCELED : UCS_ERR_TIMED_OUT, "the " + what + " gave up on it: " + reason);
  close_endpoints(abandoned);
  for (transfer& t : ts)
    if (t.request.handle && t.receive) ucp_request_cancel(worker_, t.request.handle);
  const steady::time_point until = steady::now() + teardown_grace;
  for (bool pending = true; pending && steady::now() < until;) {
    pending = false;
    for (transfer& t : ts) pending = !t.request.poll() || pending;
    if (pending) progress(until);
  }
  for (transfer& t : ts) {
    if (t.request.handle) {
      // Not seen in practice: UCX ends every request of a closed endpoint, and cancels receives.
      spdlog::error("{}: a request to {} did not end after its endpoint was closed", self(), t.peer->where);
      ucp_request_free(t.request.handle);
      t.request.handle = nullptr;
    }
  }
  return make_error(errc::unavailable, self() + ": " + what + ": " + reason);
}

status ucx_communicator::send(const float* data, size_t n, int peer) {
  TROUPE_TRY(check_peer(peer, "send to"));
  if (n == 0) return {};
  link& l = *peers_[static_cast<size_t>(peer)];
  transfer t;
  post_send(t, l, p2p, data, n * sizeof(float));
  return wait(std::span(&t, 1), "send of " + std::to_string(n) + " floats to rank " + std::to_string(peer));
}

status ucx_communicator::recv(float* data, size_t n, int peer) {
  TROUPE_TRY(check_peer(peer, "receive from"));
  if (n == 0) return {};
  link& l = *peers_[static_cast<size_t>(peer)];
  // Posted even if the peer has gone: what it sent before it left may be here already.
  transfer t;
  post_recv(t, l, p2p, data, n * sizeof(float));
  return wait(std::span(&t, 1), "receive of " + std::to_string(n) + " floats from rank " + std::to_string(peer));
}

status ucx_communicator::all_reduce_sum(float* data, size_t n) {
  if (world_ == 1 || n == 0) return {};
  for (int k = 0; k < world_; ++k)
    if (k != rank_) TROUPE_TRY(check_peer(k, "all-reduce with"));
  // Every rank picks the same algorithm: it depends on n and the world size alone.
  return n * sizeof(float) < all_to_all_below_bytes ? all_to_all(data, n) : reduce_scatter_all_gather(data, n);
}

void ucx_communicator::sum_in_rank_order(float* out, const float* own, const float* other, size_t stride,
                                         size_t n) const {
  auto source = [&](int k) { return k == rank_ ? own : other + static_cast<size_t>(k < rank_ ? k : k - 1) * stride; };
  float acc[sum_block];
  for (size_t begin = 0; begin < n; begin += sum_block) {
    const size_t len = std::min(sum_block, n - begin);
    const float* first = source(0) + begin;
    std::copy(first, first + len, acc);
    for (int k = 1; k < world_; ++k) {
      const float* src = source(k) + begin;
      for (size_t i = 0; i < len; ++i) acc[i] += src[i];
    }
    std::copy(acc, acc + len, out + begin);
  }
}

status ucx_communicator::all_to_all(float* data, size_t n) {
  // Rank k's buffer lands in scratch slot k (k < rank) or k - 1 (k > rank).
  scratch_.resize(static_cast<size_t>(world_ - 1) * n);
  std::vector<transfer> ts(static_cast<size_t>(2 * (world_ - 1)));
  size_t t = 0;
  for (int k = 0; k < world_; ++k) {
    if (k == rank_) continue;
    link& l = *peers_[static_cast<size_t>(k)];
    const size_t slot = static_cast<size_t>(k < rank_ ? k : k - 1);
    post_recv(ts[t++], l, collective, scratch_.data() + slot * n, n * sizeof(float));
    post_send(ts[t++], l, collective, data, n * sizeof(float));
  }
  TROUPE_TRY(wait(ts, "all-reduce of " + std::to_string(n) + " floats"));
  sum_in_rank_order(data, data, scratch_.data(), n, n);
  return {};
}

status ucx_communicator::reduce_scatter_all_gather(float* data, size_t n) {
  // Rank c owns chunk c: it alone sums it (in rank order) and sends the result to the others, so
  // every rank ends with the owner's bits.
  const size_t w = static_cast<size_t>(world_);
  auto begin = [&](size_t c) { return n * c / w; };
  auto length = [&](size_t c) { return begin(c + 1) - begin(c); };
  const size_t mine = static_cast<size_t>(rank_), stride = length(mine);
  const std::string what = "all-reduce of " + std::to_string(n) + " floats";
  scratch_.resize((w - 1) * stride);
  std::vector<transfer> ts;
  ts.reserve(2 * (w - 1));
  for (int k = 0; k < world_; ++k) {
    if (k == rank_) continue;
    link& l = *peers_[static_cast<size_t>(k)];
    const size_t slot = static_cast<size_t>(k < rank_ ? k : k - 1), theirs = static_cast<size_t>(k);
    if (stride) post_recv(ts.emplace_back(), l, collective, scratch_.data() + slot * stride, stride * sizeof(float));
    if (length(theirs)) post_send(ts.emplace_back(), l, collective, data + begin(theirs), length(theirs) * sizeof(float));
  }
  TROUPE_TRY(wait(ts, what + " (reduce-scatter)"));
  sum_in_rank_order(data + begin(mine), data + begin(mine), scratch_.data(), stride, stride);
  ts.clear();
  for (int k = 0; k < world_; ++k) {
    if (k == rank_) continue;
    link& l = *peers_[static_cast<size_t>(k)];
    const size_t theirs = static_cast<size_t>(k);
    if (length(theirs)) post_recv(ts.emplace_back(), l, collective, data + begin(theirs), length(theirs) * sizeof(float));
    if (stride) post_send(ts.emplace_back(), l, collective, data + begin(mine), stride * sizeof(float));
  }
  return wait(ts, what + " (all-gather)");
}

}  // namespace

expected<std::unique_ptr<communicator>> make_ucx_communicator(const ucx_options& opts) {
  return ucx_communicator::create(opts);
}

bool ucx_available() noexcept { return true; }

}  // namespace troupe
