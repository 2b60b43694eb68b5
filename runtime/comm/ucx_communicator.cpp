// The UCX communicator's transfers: tagged sends and receives, waiting for them with deadlines and
// peer failures, and the two all-reduce algorithms. Set-up and teardown: ucx_communicator_setup.cpp.
#include "runtime/comm/ucx_communicator.hpp"

#include <algorithm>

#include "runtime/comm/ucx_communicator_impl.hpp"
#include "runtime/core/log.hpp"

namespace troupe {
namespace ucx_detail {
namespace {

// Below this many bytes all_reduce_sum sends every rank's whole buffer to every rank (one round);
// from it on, a reduce-scatter then an all-gather (two rounds, 2(w-1)/w of the buffer each way).
constexpr size_t all_to_all_below_bytes = 256 << 10;
// Summation runs over blocks of this many floats, accumulated in a local array.
constexpr size_t sum_block = 1024;

}  // namespace

void op::start(ucs_status_ptr_t p) {
  if (p == nullptr) {
    status = UCS_OK;
  } else if (UCS_PTR_IS_ERR(p)) {
    status = UCS_PTR_STATUS(p);
  } else {
    handle = p;
    status = UCS_INPROGRESS;
  }
}

bool op::poll() {
  if (!handle) return true;
  const ucs_status_t s = ucp_request_check_status(handle);
  if (s == UCS_INPROGRESS) return false;
  status = s;
  ucp_request_free(handle);
  handle = nullptr;
  return true;
}

void op::abandon() {
  if (handle) ucp_request_free(handle);
  handle = nullptr;
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

}  // namespace ucx_detail

expected<std::unique_ptr<communicator>> make_ucx_communicator(const ucx_options& opts) {
  return ucx_detail::ucx_communicator::create(opts);
}

bool ucx_available() noexcept { return true; }

}  // namespace troupe
