// The in-process communicator group: all-reduce sums in rank order with the same bits on every rank,
// messages between a pair arrive in order and never mix with other pairs, and a rank that is missing
// or gone makes its peers fail within the timeout instead of waiting forever.
#include "runtime/comm/local_communicator.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

namespace troupe {
namespace {

using namespace std::chrono_literals;

/// Runs body(rank) on one thread per rank and waits for all.
void on_every_rank(int n, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(LocalCommunicator, AllReduceSumsInRankOrderWithTheSameBitsOnEveryRank) {
  for (int n : {1, 2, 3, 4}) {
    SCOPED_TRACE(n);
    auto group = make_local_group(n);
    ASSERT_EQ(group.size(), static_cast<size_t>(n));
    // Values of very different magnitudes, so that another order of additions gives other bits.
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> mag(-20.0f, 20.0f), sign(-1.0f, 1.0f);
    std::vector<std::vector<float>> data(static_cast<size_t>(n), std::vector<float>(4099));
    for (auto& d : data)
      for (auto& x : d) x = sign(rng) * std::exp2(mag(rng));
    std::vector<float> expected = data[0];
    for (int r = 1; r < n; ++r)
      for (size_t i = 0; i < expected.size(); ++i) expected[i] += data[static_cast<size_t>(r)][i];

    auto results = data;
    std::vector<status> st(static_cast<size_t>(n));
    on_every_rank(n, [&](int r) {
      EXPECT_EQ(group[static_cast<size_t>(r)]->rank(), r);
      EXPECT_EQ(group[static_cast<size_t>(r)]->world_size(), n);
      EXPECT_EQ(group[static_cast<size_t>(r)]->buffers(), buffer_space::host);
      auto& buf = results[static_cast<size_t>(r)];
      st[static_cast<size_t>(r)] = group[static_cast<size_t>(r)]->all_reduce_sum(buf.data(), buf.size());
    });
    for (int r = 0; r < n; ++r) {
      ASSERT_TRUE(st[static_cast<size_t>(r)]) << st[static_cast<size_t>(r)].error().what();
      EXPECT_TRUE(same_bits(results[static_cast<size_t>(r)], expected)) << "rank " << r;
    }
  }
}

TEST(LocalCommunicator, ManyAllReducesInARowKeepTheirRoundsApart) {
  const int n = 3, rounds = 200;
  auto group = make_local_group(n);
  std::vector<int> failures(n, 0);
  on_every_rank(n, [&](int r) {
    for (int k = 0; k < rounds; ++k) {
      // Each round its own size and values: a rank reading another round's data would see it.
      std::vector<float> v(static_cast<size_t>(1 + k % 7), static_cast<float>(k * 10 + r));
      if (!group[static_cast<size_t>(r)]->all_reduce_sum(v.data(), v.size())) ++failures[static_cast<size_t>(r)];
      const float want = static_cast<float>(3 * k * 10 + 0 + 1 + 2);
      for (float x : v)
        if (x != want) ++failures[static_cast<size_t>(r)];
    }
  });
  EXPECT_EQ(failures, std::vector<int>(n, 0));
}

TEST(LocalCommunicator, MessagesBetweenAPairArriveInOrderAndPairsDoNotMix) {
  auto group = make_local_group(3);
  // Rank 0 sends three messages to rank 1 and two to rank 2 before anyone receives (send does not wait).
  for (float v : {1.0f, 2.0f, 3.0f}) {
    std::vector<float> m(5, v);
    ASSERT_TRUE(group[0]->send(m.data(), m.size(), 1));
  }
  for (float v : {10.0f, 20.0f}) {
    std::vector<float> m(2, v);
    ASSERT_TRUE(group[0]->send(m.data(), m.size(), 2));
  }
  std::vector<float> m(5, 7.0f);
  ASSERT_TRUE(group[2]->send(m.data(), 5, 1));

  std::vector<float> got(5);
  ASSERT_TRUE(group[1]->recv(got.data(), 5, 2));
  EXPECT_EQ(got, std::vector<float>(5, 7.0f));
  for (float v : {1.0f, 2.0f, 3.0f}) {
    ASSERT_TRUE(group[1]->recv(got.data(), 5, 0));
    EXPECT_EQ(got, std::vector<float>(5, v));
  }
  std::vector<float> two(2);
  for (float v : {10.0f, 20.0f}) {
    ASSERT_TRUE(group[2]->recv(two.data(), 2, 0));
    EXPECT_EQ(two, std::vector<float>(2, v));
  }
}

TEST(LocalCommunicator, ARecvWaitsForItsSender) {
  auto group = make_local_group(2);
  std::vector<float> got(3);
  std::thread sender([&] {
    std::this_thread::sleep_for(50ms);
    const std::vector<float> m = {1, 2, 3};
    EXPECT_TRUE(group[1]->send(m.data(), m.size(), 0));
  });
  EXPECT_TRUE(group[0]->recv(got.data(), 3, 1));
  sender.join();
  EXPECT_EQ(got, (std::vector<float>{1, 2, 3}));
}

TEST(LocalCommunicator, AMissingRankFailsTheAllReduceWithinTheTimeoutNamingIt) {
  auto group = make_local_group(3, 100ms);
  std::vector<status> st(2);
  const auto t0 = std::chrono::steady_clock::now();
  on_every_rank(2, [&](int r) {  // rank 2 never comes
    std::vector<float> v(4, 1.0f);
    st[static_cast<size_t>(r)] = group[static_cast<size_t>(r)]->all_reduce_sum(v.data(), v.size());
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (const auto& s : st) {
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code(), errc::unavailable);
  }
  // The first rank to time out names the missing one; the other learns the group is broken.
  const std::string both = st[0].error().message() + st[1].error().message();
  EXPECT_NE(both.find("rank 2 to join the all-reduce"), std::string::npos) << both;
  // The group stays broken: a later call fails at once instead of waiting again.
  std::vector<float> v(4);
  const auto t1 = std::chrono::steady_clock::now();
  auto late = group[2]->all_reduce_sum(v.data(), v.size());
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message().find("broken"), std::string::npos) << late.error().what();
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 50ms);
}

TEST(LocalCommunicator, ARecvFromASilentPeerTimesOutNamingIt) {
  auto group = make_local_group(2, 50ms);
  std::vector<float> got(8);
  auto st = group[0]->recv(got.data(), got.size(), 1);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::unavailable);
  EXPECT_NE(st.error().message().find("rank 1 to send 8 floats"), std::string::npos) << st.error().what();
}

TEST(LocalCommunicator, ARankThatLeavesBreaksTheGroupForItsPeers) {
  auto group = make_local_group(2, 10s);
  std::vector<float> got(2);
  status st;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread waiter([&] { st = group[0]->recv(got.data(), 2, 1); });
  std::this_thread::sleep_for(30ms);
  group[1].reset();  // rank 1's shard is gone
  waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("rank 1 left the group"), std::string::npos) << st.error().what();
}

TEST(LocalCommunicator, MismatchedSizesAndBadPeersAreRefused) {
  auto group = make_local_group(2, 1s);
  EXPECT_EQ(group[0]->send(nullptr, 0, 0).error().code(), errc::invalid_argument);  // itself
  EXPECT_EQ(group[0]->recv(nullptr, 0, 2).error().code(), errc::invalid_argument);  // no such rank
  EXPECT_EQ(group[0]->send(nullptr, 0, -1).error().code(), errc::invalid_argument);

  std::vector<float> m(3, 1.0f), got(4);
  ASSERT_TRUE(group[1]->send(m.data(), 3, 0));
  auto st = group[0]->recv(got.data(), 4, 1);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("sent 3 floats, this rank expected 4"), std::string::npos) << st.error().what();

  auto other = make_local_group(2, 1s);
  std::vector<status> ar(2);
  on_every_rank(2, [&](int r) {
    std::vector<float> v(static_cast<size_t>(4 + r));
    ar[static_cast<size_t>(r)] = other[static_cast<size_t>(r)]->all_reduce_sum(v.data(), v.size());
  });
  EXPECT_FALSE(ar[0]);
  EXPECT_FALSE(ar[1]);
}

}  // namespace
}  // namespace troupe
