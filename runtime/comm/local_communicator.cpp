#include "runtime/comm/local_communicator.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>

namespace troupe {
namespace {

using clock = std::chrono::steady_clock;

/// What the ranks of one group share. Every field is guarded by mu.
struct group_state {
  group_state(int n, std::chrono::milliseconds t)
      : world(n), timeout(t), queues(static_cast<size_t>(n) * static_cast<size_t>(n)), gathered(static_cast<size_t>(n)),
        joined(static_cast<size_t>(n), false) {}

  const int world;
  const std::chrono::milliseconds timeout;
  std::mutex mu;
  std::condition_variable cv;
  std::string broken;  ///< why the group can no longer be used; empty while it can
  std::vector<std::deque<std::vector<float>>> queues;  ///< messages from src to dst at [src * world + dst]

  // The all-reduce in progress: ranks copy their data in (gathering), and once all have, each sums the
  // copies into its own buffer (reducing); the last one out opens the next round.
  std::vector<std::vector<float>> gathered;
  std::vector<bool> joined;  ///< which ranks have copied their data into this round
  int n_joined = 0, n_left = 0;
  bool reducing = false;
};

class local_communicator final : public communicator {
 public:
  local_communicator(std::shared_ptr<group_state> g, int rank) : g_(std::move(g)), rank_(rank) {}

  ~local_communicator() override {
    std::lock_guard lk(g_->mu);
    if (g_->broken.empty()) g_->broken = "rank " + std::to_string(rank_) + " left the group";
    g_->cv.notify_all();
  }

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return g_->world; }
  buffer_space buffers() const noexcept override { return buffer_space::host; }

  status all_reduce_sum(float* data, size_t n) override {
    group_state& g = *g_;
    std::unique_lock lk(g.mu);
    const auto deadline = clock::now() + g.timeout;
    // A rank that is back before the previous round's slowest reader has finished waits for it.
    TROUPE_TRY(wait(lk, deadline, [&] { return !g.reducing; }, [&] { return std::string("the previous all-reduce to finish"); }));
    g.gathered[static_cast<size_t>(rank_)].assign(data, data + n);
    g.joined[static_cast<size_t>(rank_)] = true;
    if (++g.n_joined == g.world) {
      g.reducing = true;
      g.cv.notify_all();
    }
    TROUPE_TRY(wait(lk, deadline, [&] { return g.reducing; }, [&] {
      std::string missing;
      for (int r = 0; r < g.world; ++r)
        if (!g.joined[static_cast<size_t>(r)]) missing += (missing.empty() ? "rank " : ", ") + std::to_string(r);
      return missing + " to join the all-reduce";
    }));
    for (int r = 0; r < g.world; ++r)
      if (g.gathered[static_cast<size_t>(r)].size() != n)
        return fail(lk, "all-reduce: rank " + std::to_string(r) + " reduces " +
                            std::to_string(g.gathered[static_cast<size_t>(r)].size()) + " floats, this rank " +
                            std::to_string(n));
    // Nobody writes the gathered copies while reducing, so the sums run unlocked. Every rank adds in
    // rank order 0..n-1, so every rank gets the same bits.
    lk.unlock();
    std::copy_n(g.gathered[0].data(), n, data);
    for (int r = 1; r < g.world; ++r) {
      const float* src = g.gathered[static_cast<size_t>(r)].data();
      for (size_t i = 0; i < n; ++i) data[i] += src[i];
    }
    lk.lock();
    if (++g.n_left == g.world) {
      g.n_joined = g.n_left = 0;
      std::fill(g.joined.begin(), g.joined.end(), false);
      g.reducing = false;
      g.cv.notify_all();
    }
    return {};
  }

  status send(const float* data, size_t n, int peer) override {
    TROUPE_TRY(check_peer(peer, "send to"));
    std::lock_guard lk(g_->mu);
    if (!g_->broken.empty()) return broken_error();
    g_->queues[queue_index(rank_, peer)].emplace_back(data, data + n);
    g_->cv.notify_all();
    return {};
  }

  status recv(float* data, size_t n, int peer) override {
    TROUPE_TRY(check_peer(peer, "receive from"));
    group_state& g = *g_;
    std::unique_lock lk(g.mu);
    auto& queue = g.queues[queue_index(peer, rank_)];
    TROUPE_TRY(wait(lk, clock::now() + g.timeout, [&] { return !queue.empty(); },
                    [&] { return "rank " + std::to_string(peer) + " to send " + std::to_string(n) + " floats"; }));
    std::vector<float> msg = std::move(queue.front());
    queue.pop_front();
    if (msg.size() != n)
      return fail(lk, "rank " + std::to_string(peer) + " sent " + std::to_string(msg.size()) + " floats, this rank expected " +
                          std::to_string(n));
    lk.unlock();
    std::copy_n(msg.data(), n, data);
    return {};
  }

 private:
  size_t queue_index(int src, int dst) const noexcept {
    return static_cast<size_t>(src) * static_cast<size_t>(g_->world) + static_cast<size_t>(dst);
  }

  std::string name() const {
    return "local communicator (rank " + std::to_string(rank_) + " of " + std::to_string(g_->world) + ")";
  }

  status check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= g_->world || peer == rank_)
      return make_error(errc::invalid_argument, name() + ": cannot " + what + " rank " + std::to_string(peer));
    return {};
  }

  unexpected broken_error() const { return make_error(errc::unavailable, name() + ": the group is broken: " + g_->broken); }

  /// Breaks the group (every rank's pending and later calls fail) and returns the error.
  unexpected fail(std::unique_lock<std::mutex>& lk, const std::string& why) {
    if (g_->broken.empty()) g_->broken = why + " (seen by rank " + std::to_string(rank_) + ")";
    g_->cv.notify_all();
    return make_error(errc::unavailable, name() + ": " + why);
  }

  /// Waits until ready() or the deadline; a timeout breaks the group naming what was awaited. A broken
  /// group fails at once, even when ready() holds: its state is no longer what the ranks agreed on.
  template <class Ready, class Awaited>
  status wait(std::unique_lock<std::mutex>& lk, clock::time_point deadline, Ready ready, Awaited awaited) {
    for (;;) {
      if (!g_->broken.empty()) return broken_error();
      if (ready()) return {};
      if (g_->cv.wait_until(lk, deadline) == std::cv_status::timeout && !ready() && g_->broken.empty())
        return fail(lk, "waited " + std::to_string(g_->timeout.count()) + " ms for " + awaited());
    }
  }

  std::shared_ptr<group_state> g_;
  int rank_;
};

}  // namespace

std::vector<std::shared_ptr<communicator>> make_local_group(int n, std::chrono::milliseconds timeout) {
  auto g = std::make_shared<group_state>(n, timeout);
  std::vector<std::shared_ptr<communicator>> ranks;
  for (int r = 0; r < n; ++r) ranks.push_back(std::make_shared<local_communicator>(g, r));
  return ranks;
}

}  // namespace troupe
