// The UCX communicator's set-up and teardown: its UCX context and worker on the configured interface,
// the exchange of worker addresses through the address book, the hellos, and closing endpoints.
#include <poll.h>

#include <algorithm>
#include <random>

#include "runtime/comm/net_interface.hpp"
#include "runtime/comm/ucx_communicator_impl.hpp"
#include "runtime/core/log.hpp"

namespace troupe::ucx_detail {
namespace {

void put_le(uint8_t* out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_le(const uint8_t* in, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

// What a rank publishes: its instance id (8 bytes, little-endian), then its UCX worker address.
constexpr size_t instance_bytes = 8;

void on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* l = static_cast<link*>(arg);
  spdlog::debug("ucx: {}: endpoint failed: {}", l->where, ucs_status_string(status));
  l->fail(status, ucs_status_string(status));
}

}  // namespace

hello_buffer encode(const hello& h) {
  hello_buffer b{};
  put_le(b.data(), h.magic, 4);
  put_le(b.data() + 4, h.version, 4);
  put_le(b.data() + 8, h.rank, 4);
  put_le(b.data() + 12, h.world, 4);
  put_le(b.data() + 16, h.instance, 8);
  return b;
}

hello decode(const hello_buffer& b) {
  return {static_cast<uint32_t>(get_le(b.data(), 4)), static_cast<uint32_t>(get_le(b.data() + 4, 4)),
          static_cast<uint32_t>(get_le(b.data() + 8, 4)), static_cast<uint32_t>(get_le(b.data() + 12, 4)),
          get_le(b.data() + 16, 8)};
}

expected<std::unique_ptr<communicator>> ucx_communicator::create(const ucx_options& opts) {
  const int world = opts.world_size;
  if (world < 1 || world > max_world)
    return make_error(errc::invalid_argument, "ucx: a group has 1 to " + std::to_string(max_world) + " ranks, not " +
                                                  std::to_string(world));
  if (opts.rank < 0 || opts.rank >= world)
    return make_error(errc::invalid_argument, "ucx: rank " + std::to_string(opts.rank) + " is outside a group of " +
                                                  std::to_string(world));
  if (opts.timeout.count() <= 0 || opts.connect_timeout.count() <= 0)
    return make_error(errc::invalid_argument, "ucx: timeouts must be positive");
  if (!opts.names.empty() && opts.names.size() != static_cast<size_t>(world))
    return make_error(errc::invalid_argument, "ucx: " + std::to_string(opts.names.size()) + " names for a group of " +
                                                  std::to_string(world) + " ranks");
  if (world > 1 && !opts.addresses)
    return make_error(errc::invalid_argument, "ucx: a group of " + std::to_string(world) + " ranks needs an address book");
  std::unique_ptr<ucx_communicator> c(new ucx_communicator());
  c->rank_ = opts.rank;
  c->world_ = world;
  c->timeout_ = opts.timeout;
  c->connect_timeout_ = opts.connect_timeout;
  c->names_ = opts.names;
  if (world == 1) return std::unique_ptr<communicator>(std::move(c));
  TROUPE_TRY(c->init(opts));
  TROUPE_TRY(c->connect_all(*opts.addresses, steady::now() + opts.connect_timeout));
  spdlog::debug("{} of {} connected to its peers", c->self(), c->world_);
  return std::unique_ptr<communicator>(std::move(c));
}

std::string ucx_communicator::where(int rank) const {
  std::string w = "rank " + std::to_string(rank);
  if (!names_.empty()) w += " (" + names_[static_cast<size_t>(rank)] + ")";
  return w;
}

std::string ucx_communicator::self() const { return "ucx: " + where(rank_); }

status ucx_communicator::init(const ucx_options& opts) {
  const std::string me = self();
  if (!opts.host.empty()) {
    auto device = interface_of(opts.host);
    if (!device) return make_error(device.error().code(), me + ": " + device.error().message());
    device_ = *device;
  }
  ucp_config_t* config = nullptr;
  // The UCX_* environment (UCX_TLS, UCX_NET_DEVICES, ...) is read here; the host overrides the devices.
  if (const ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK)
    return make_error(errc::unavailable, me + ": read the UCX configuration: " + ucs_status_string(s));
  if (!device_.empty()) {
    if (const ucs_status_t s = ucp_config_modify(config, "NET_DEVICES", device_.c_str()); s != UCS_OK) {
      ucp_config_release(config);
      return make_error(errc::unavailable, me + ": restrict UCX to interface " + device_ + ": " + ucs_status_string(s));
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  params.estimated_num_eps = static_cast<size_t>(world_ - 1);
  const ucs_status_t s = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (s != UCS_OK)
    return make_error(errc::unavailable, me + ": UCX init" + (device_.empty() ? "" : " on interface " + device_) + ": " +
                                             ucs_status_string(s));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (const ucs_status_t w = ucp_worker_create(context_, &wp, &worker_); w != UCS_OK)
    return make_error(errc::unavailable, me + ": UCX worker" + (device_.empty() ? "" : " on interface " + device_) +
                                             ": " + ucs_status_string(w));
  if (const ucs_status_t e = ucp_worker_get_efd(worker_, &event_fd_); e != UCS_OK)
    return make_error(errc::unavailable, me + ": UCX worker event fd: " + ucs_status_string(e));
  std::random_device entropy;
  while (instance_ == 0) instance_ = static_cast<uint64_t>(entropy()) << 32 | entropy();
  peers_.resize(static_cast<size_t>(world_));
  for (int j = 0; j < world_; ++j) {
    if (j == rank_) continue;
    auto l = std::make_unique<link>();
    l->rank = j;
    l->where = where(j);
    peers_[static_cast<size_t>(j)] = std::move(l);
  }
  last_progress_ = steady::now();
  return {};
}

status ucx_communicator::connect_all(ucx_address_book& book, steady::time_point deadline) {
  const std::string me = self();
  {
    ucp_address_t* address = nullptr;
    size_t length = 0;
    if (const ucs_status_t s = ucp_worker_get_address(worker_, &address, &length); s != UCS_OK)
      return make_error(errc::unavailable, me + ": UCX worker address: " + ucs_status_string(s));
    std::string published(instance_bytes, '\0');
    put_le(reinterpret_cast<uint8_t*>(published.data()), instance_, instance_bytes);
    published.append(reinterpret_cast<const char*>(address), length);
    ucp_worker_release_address(worker_, address);
    if (auto s = book.publish(rank_, published); !s)
      return make_error(errc::unavailable, me + ": cannot publish its address: " + s.error().message());
  }
  // Every peer's hello is awaited from the start: it may come before this rank has connected back.
  for (auto& l : peers_)
    if (l) await_hello(*l);
  for (;;) {
    progress(deadline);
    bool all = true;
    for (auto& p : peers_) {
      if (!p) continue;
      link& l = *p;
      op& hello_recv = l.setup.hello_recv;
      ucp_tag_recv_info_t info{};
      if (const ucs_status_t s = hello_recv.handle ? ucp_tag_recv_request_test(hello_recv.handle, &info) : UCS_INPROGRESS;
          s != UCS_INPROGRESS) {
        ucp_request_free(hello_recv.handle);
        hello_recv.handle = nullptr;
        if (!check_hello(l, s, info.length)) {
          answer_before_refusing(book, l);
          return make_error(errc::unavailable, setup_error_);
        }
        await_hello(l);  // a peer that reconnects greets again
      }
      if (l.ep && (l.failed() || (l.setup.hello_send.poll() && l.setup.hello_send.status != UCS_OK)))
        reconnect_later(l, l.failed() ? l.failure_reason : ucs_status_string(l.setup.hello_send.status));
      if (!l.ep && steady::now() >= l.setup.next_try) try_connect(book, l);
      if (l.ep && !l.setup.received && steady::now() >= l.setup.recheck_at) recheck_address(book, l);
      all = greeted(l) && all;
    }
    if (all) break;
    if (steady::now() >= deadline) {
      std::string missing;
      for (auto& p : peers_) {
        if (!p || greeted(*p)) continue;
        missing += missing.empty() ? "" : "; ";
        missing += p->where + (p->ep ? p->setup.received ? " did not take this rank's hello"
                                                         : " was connected to but sent no hello"
                                     : ": " + p->setup.last_error);
      }
      return make_error(errc::unavailable, me + ": no connection within " + ms_text(connect_timeout_) + ": " + missing);
    }
  }
  return {};
}

void ucx_communicator::try_connect(ucx_address_book& book, link& l) {
  greeting& g = l.setup;
  auto retry = [&](std::string why) {
    g.last_error = std::move(why);
    g.next_try = steady::now() + g.backoff;
    g.backoff = std::min(g.backoff * 2, longest_retry);
  };
  auto published = book.fetch(l.rank);
  if (!published) return retry("no address: " + published.error().message());
  if (published->size() <= instance_bytes)
    return retry("its published address is malformed (" + std::to_string(published->size()) + " bytes)");
  const uint64_t instance = get_le(reinterpret_cast<const uint8_t*>(published->data()), instance_bytes);
  // PEER error handling: a dead peer fails its requests (and calls on_endpoint_error) instead of
  // leaving them pending forever. The address came from the address book, whose keeper vouches for it.
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(published->data() + instance_bytes);
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = on_endpoint_error;
  params.err_handler.arg = &l;
  l.failure = UCS_OK;
  l.failure_reason.clear();
  if (const ucs_status_t s = ucp_ep_create(worker_, &params, &l.ep); s != UCS_OK) {
    l.ep = nullptr;
    return retry(std::string("cannot connect: ") + ucs_status_string(s));
  }
  g.instance = instance;
  g.recheck_at = steady::now() + recheck_interval;
  g.hello_out = encode(hello{.rank = static_cast<uint32_t>(rank_), .world = static_cast<uint32_t>(world_), .instance = instance_});
  ucp_request_param_t p{};
  g.hello_send = op{};
  g.hello_send.start(ucp_tag_send_nbx(l.ep, g.hello_out.data(), hello_bytes, make_tag(hello_channel, rank_, 0), &p));
  spdlog::debug("{}: connecting to {}", self(), l.where);
}

void ucx_communicator::await_hello(link& l) {
  // Always a request, whose test reports the length that arrived (see post_recv).
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  l.setup.hello_in = {};
  l.setup.hello_recv = op{};
  l.setup.hello_recv.start(ucp_tag_recv_nbx(worker_, l.setup.hello_in.data(), hello_bytes,
                                            make_tag(hello_channel, l.rank, 0), full_mask, &p));
}

bool ucx_communicator::check_hello(link& l, ucs_status_t status, size_t length) {
  const hello h = decode(l.setup.hello_in);
  const std::string me = self();
  if (status != UCS_OK || length != hello_bytes || h.magic != hello_magic || h.version != hello_version) {
    setup_error_ = me + ": " + l.where + " is not a troupe UCX peer of this version";
  } else if (h.world != static_cast<uint32_t>(world_)) {
    setup_error_ = me + ": " + l.where + " has a group of " + std::to_string(h.world) +
                   " ranks, but this rank's group has " + std::to_string(world_) +
                   ": the world size must be the same on every rank";
  } else if (h.rank != static_cast<uint32_t>(l.rank)) {
    setup_error_ = me + ": " + l.where + " says it is rank " + std::to_string(h.rank) +
                   " (is a rank given to two processes?)";
  }
  if (!setup_error_.empty()) return false;
  l.setup.received = true;
  l.setup.heard_instance = h.instance;
  if (l.ep && l.setup.instance != h.instance) {
    // This rank connected to an address the peer has since replaced (it rebuilt its group): the
    // hello went to a worker that is no longer listening for it.
    reconnect_later(l, "its address changed");
    l.setup.next_try = steady::now();
  }
  return true;
}

void ucx_communicator::recheck_address(ucx_address_book& book, link& l) {
  // The peer may have been connected to at an address it has replaced while its old worker still
  // takes messages: nobody would answer this rank's hello there, and the peer's new instance may not
  // have found this rank yet.
  l.setup.recheck_at = steady::now() + recheck_interval;
  auto published = book.fetch(l.rank);
  if (!published || published->size() <= instance_bytes) return;
  if (get_le(reinterpret_cast<const uint8_t*>(published->data()), instance_bytes) == l.setup.instance) return;
  reconnect_later(l, "its address changed");
  l.setup.next_try = steady::now();
}

bool ucx_communicator::greeted(link& l) {
  greeting& g = l.setup;
  return l.ep && !l.failed() && g.received && g.heard_instance == g.instance && g.hello_send.poll() &&
         g.hello_send.status == UCS_OK;
}

void ucx_communicator::reconnect_later(link& l, std::string why) {
  spdlog::debug("{}: connection to {} lost ({}); connecting again", self(), l.where, why);
  l.fail(UCS_ERR_CANCELED, why);
  link* const one[] = {&l};
  close_endpoints(one);
  greeting& g = l.setup;
  g.last_error = "connected, then " + why;
  g.next_try = steady::now() + g.backoff;
  g.backoff = std::min(g.backoff * 2, longest_retry);
}

void ucx_communicator::answer_before_refusing(ucx_address_book& book, link& l) {
  // The refused peer reads this rank's hello and refuses too, rather than retrying until its
  // timeout. It closes its side once it has read it: wait for that, briefly.
  if (!l.ep) try_connect(book, l);
  if (!l.ep) return;
  const steady::time_point until = steady::now() + teardown_grace;
  while (!l.setup.hello_send.poll() && steady::now() < until) progress(until);
  while (!l.failed() && steady::now() < until) progress(until);
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
    for (link* l : links) any = !l->setup.hello_send.poll() || any;
    return any;
  };
  while (pending() && steady::now() < until) progress(until);
  for (op& o : closes) o.abandon();
  for (link* l : links) l->setup.hello_send.abandon();
}

ucx_communicator::~ucx_communicator() {
  if (!worker_) {
    if (context_) ucp_cleanup(context_);
    return;
  }
  std::vector<link*> links;
  for (auto& p : peers_) {
    if (!p) continue;
    links.push_back(p.get());
    if (p->setup.hello_recv.handle) ucp_request_cancel(worker_, p->setup.hello_recv.handle);
  }
  close_endpoints(links);
  for (link* l : links) {
    l->setup.hello_recv.poll();
    l->setup.hello_recv.abandon();
  }
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
}

}  // namespace troupe::ucx_detail
