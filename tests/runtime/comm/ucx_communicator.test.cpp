// The UCX communicator between real processes on loopback: each rank is a child process, forked
// before anything UCX-related happens in the test process, that makes its own communicator and
// reports back through a pipe; the ranks exchange their worker addresses through a directory. Point-
// to-point buffers arrive whole and in order, all_reduce_sum is bit-identical on every rank and equal
// to the sum in rank order, a late rank still connects, a killed, silent or misconfigured peer ends
// in an error that names it, within the timeouts, garbage on the ports UCX listens on harms nobody,
// and UCX listens on the configured host only.
#include "runtime/comm/ucx_communicator.hpp"
#include "tests/tools/hostile_peer.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

namespace troupe {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// A group's address book: a fresh directory the forked ranks share, removed with the group. Rank k is
// named "n<k>" in messages.
class group {
 public:
  explicit group(int world) : world_(world) {
    static int count = 0;
    dir_ = std::filesystem::temp_directory_path() / ("troupe_ucx_" + std::to_string(::getpid()) + "_" + std::to_string(count++));
    std::filesystem::remove_all(dir_);
  }
  ~group() { std::filesystem::remove_all(dir_); }
  /// Rank's options in a group of `world` ranks (this group's size unless given), on 127.0.0.1.
  ucx_options options(int rank, std::chrono::milliseconds timeout = 10s, int world = 0) const {
    ucx_options o;
    o.rank = rank;
    o.world_size = world > 0 ? world : world_;
    o.addresses = make_directory_address_book(dir_.string());
    o.host = "127.0.0.1";
    for (int k = 0; k < o.world_size; ++k) o.names.push_back(name(k));
    o.connect_timeout = 10s;
    o.timeout = timeout;
    return o;
  }
  static std::string name(int rank) { return "n" + std::to_string(rank); }
  /// Where rank's published address lies.
  std::filesystem::path address_file(int rank) const { return dir_ / std::to_string(rank); }

 private:
  int world_;
  std::filesystem::path dir_;
};

long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

std::string describe(const status& s) { return s ? "ok" : s.error().what(); }

// One child process per rank. body(rank, fd) runs in the child; what it returns, and anything it
// writes to fd on the way, comes back to the test through a pipe.
class rank_processes {
 public:
  rank_processes(int world, const std::function<std::string(int rank, int fd)>& body) {
    for (int r = 0; r < world; ++r) {
      int fds[2];
      if (pipe(fds) != 0) throw std::runtime_error("pipe");
      const pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        for (const child& c : children_) close(c.fd);
        const std::string out = body(r, fds[1]);
        write_all(fds[1], out);
        _exit(0);
      }
      close(fds[1]);
      children_.push_back({pid, fds[0], {}, false});
    }
  }
  ~rank_processes() {
    for (child& c : children_) {
      if (!c.reaped) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
      }
      close(c.fd);
    }
  }

  static void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = write(fd, s.data(), s.size());
      if (n <= 0) return;
      s.remove_prefix(static_cast<size_t>(n));
    }
  }

  /// Waits until rank r has written `text`; false after `limit`.
  bool wait_for(int r, const std::string& text, std::chrono::milliseconds limit) {
    const steady::time_point until = steady::now() + limit;
    child& c = children_[static_cast<size_t>(r)];
    while (c.out.find(text) == std::string::npos) {
      if (steady::now() >= until || !read_some(c, until)) return false;
    }
    return true;
  }

  void kill_rank(int r) { kill(children_[static_cast<size_t>(r)].pid, SIGKILL); }
  pid_t pid(int r) const { return children_[static_cast<size_t>(r)].pid; }

  /// Every rank's output once all have exited; a rank still running after `limit` is killed and its
  /// output ends with "<hung>".
  std::vector<std::string> finish(std::chrono::milliseconds limit = 20s) {
    const steady::time_point until = steady::now() + limit;
    std::vector<std::string> out;
    for (child& c : children_) {
      while (read_some(c, until)) {
      }
      int status = 0;
      while (waitpid(c.pid, &status, WNOHANG) == 0) {
        if (steady::now() >= until) {
          kill(c.pid, SIGKILL);
          waitpid(c.pid, &status, 0);
          c.out += "<hung>";
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
      c.reaped = true;
      out.push_back(c.out);
    }
    return out;
  }

 private:
  struct child {
    pid_t pid;
    int fd;
    std::string out;
    bool reaped;
  };
  // Reads what is there (waiting until `until`); false at end of file or deadline.
  static bool read_some(child& c, steady::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now()).count();
    pollfd p{c.fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    const ssize_t n = read(c.fd, buf, sizeof buf);
    if (n <= 0) return false;
    c.out.append(buf, static_cast<size_t>(n));
    return true;
  }
  std::vector<child> children_;
};

// Test data whose sums depend on the order of the additions: magnitudes spread over 2^-8 .. 2^8.
float value(int rank, size_t i, uint64_t salt) {
  uint64_t x = (static_cast<uint64_t>(rank) + 1) * 0x9E3779B97F4A7C15ull ^ (i + salt * 0x100000001B3ull);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  const float unit = static_cast<float>(x >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
  return std::ldexp(unit, static_cast<int>((x >> 8) % 17) - 8);
}

std::vector<float> rank_data(int rank, size_t n, uint64_t salt) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(rank, i, salt);
  return v;
}

uint64_t fnv1a(const std::vector<float>& v) {
  uint64_t h = 0xCBF29CE484222325ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ bytes[i]) * 0x100000001B3ull;
  return h;
}

#define REQUIRE_UCX() \
  if (!ucx_available()) GTEST_SKIP() << "this build has no UCX"

TEST(UcxCommunicator, TellsWhetherThisBuildHasUcx) {
#ifdef TROUPE_HAVE_UCX
  EXPECT_TRUE(ucx_available());
#else
  EXPECT_FALSE(ucx_available());
  auto c = make_ucx_communicator(group(2).options(0));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), errc::unavailable);
  EXPECT_NE(c.error().message().find("no UCX"), std::string::npos);
#endif
}

TEST(UcxCommunicator, BadOptionsAreRefusedBeforeConnecting) {
  REQUIRE_UCX();
  // Checked before UCX starts, so this test process stays free of it.
  const group g(2);
  auto refused = [&](ucx_options o, const std::string& named) {
    auto c = make_ucx_communicator(o);
    ASSERT_FALSE(c) << named;
    EXPECT_EQ(c.error().code(), errc::invalid_argument) << c.error().message();
    EXPECT_NE(c.error().message().find(named), std::string::npos) << c.error().message();
  };
  refused(g.options(2), "rank 2");
  ucx_options empty = g.options(0);
  empty.world_size = 0;
  refused(empty, "not 0");
  ucx_options names = g.options(0);
  names.names.pop_back();
  refused(names, "1 names");
  ucx_options no_book = g.options(0);
  no_book.addresses = nullptr;
  refused(no_book, "address book");
  // A host this machine has no interface for (a documentation address, never contacted) or that
  // does not resolve: UCX would listen who knows where.
  for (const char* host : {"203.0.113.7", "no-such-host.invalid"}) {
    ucx_options o = g.options(0);
    o.host = host;
    refused(o, std::string("host '") + host + "'");
  }
}

TEST(UcxCommunicator, TwoRanksSendLargeAndSmallBuffersInOrder) {
  REQUIRE_UCX();
  const group g(2);
  const size_t large = size_t{4} << 20;  // 4M floats: rendezvous, not eager
  const std::vector<size_t> smalls = {1, 3, 1000, 17};
  rank_processes ranks(2, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    communicator& comm = **c;
    if (comm.rank() != r || comm.world_size() != 2 || comm.buffers() != buffer_space::host) return "bad identity";
    if (r == 0) {
      if (auto s = comm.send(rank_data(0, large, 1).data(), large, 1); !s) return "send large: " + describe(s);
      for (size_t i = 0; i < smalls.size(); ++i)
        if (auto s = comm.send(rank_data(0, smalls[i], 2 + i).data(), smalls[i], 1); !s) return "send small: " + describe(s);
      if (auto s = comm.send(nullptr, 0, 1); !s) return "send empty: " + describe(s);
      std::vector<float> back(5);
      if (auto s = comm.recv(back.data(), back.size(), 1); !s) return "recv back: " + describe(s);
      return back == rank_data(1, 5, 9) ? "ok" : "the reply differs";
    }
    std::vector<float> got(large);
    if (auto s = comm.recv(got.data(), large, 0); !s) return "recv large: " + describe(s);
    if (got != rank_data(0, large, 1)) return "the large buffer differs";
    for (size_t i = 0; i < smalls.size(); ++i) {
      std::vector<float> small(smalls[i]);
      if (auto s = comm.recv(small.data(), small.size(), 0); !s) return "recv small: " + describe(s);
      if (small != rank_data(0, smalls[i], 2 + i)) return "small buffer " + std::to_string(i) + " differs";
    }
    if (auto s = comm.recv(nullptr, 0, 0); !s) return "recv empty: " + describe(s);
    if (comm.send(nullptr, 1, 1) || comm.send(nullptr, 1, 2)) return "a send to itself or a stranger passed";
    return describe(comm.send(rank_data(1, 5, 9).data(), 5, 0));
  });
  const auto out = ranks.finish();
  EXPECT_EQ(out[0], "ok");
  EXPECT_EQ(out[1], "ok");
}

TEST(UcxCommunicator, ThreeRanksPassABufferAlongAPipeline) {
  REQUIRE_UCX();
  const group g(3);
  const size_t n = size_t{1} << 20;
  // 0 -> 1 -> 2 -> 0, each stage adding its rank + 1.
  rank_processes ranks(3, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    std::vector<float> x(n, 0.0f);
    if (r == 0) {
      for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 1000);
      if (auto s = (*c)->send(x.data(), n, 1); !s) return describe(s);
      if (auto s = (*c)->recv(x.data(), n, 2); !s) return describe(s);
      for (size_t i = 0; i < n; ++i)
        if (x[i] != static_cast<float>(i % 1000) + 5.0f) return "element " + std::to_string(i) + " is " + std::to_string(x[i]);
      return "ok";
    }
    if (auto s = (*c)->recv(x.data(), n, r - 1); !s) return describe(s);
    for (float& v : x) v += static_cast<float>(r + 1);
    return describe((*c)->send(x.data(), n, (r + 1) % 3));
  });
  const auto out = ranks.finish();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(out[static_cast<size_t>(r)], "ok") << "rank " << r;
}

// Each rank all-reduces buffers of several sizes (both algorithms: all-to-all below 256 KiB,
// reduce-scatter + all-gather above, chunks of unequal length), checks the result bit for bit
// against the sum in rank order, and reports hashes that must match across ranks. A small
// point-to-point message sent before the collectives and received after them must not mix with them.
void all_reduce_in_processes(int world) {
  const group g(world);
  const std::vector<size_t> sizes = {1, 1000, 100'000, (size_t{4} << 20) + 3};
  rank_processes ranks(world, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    communicator& comm = **c;
    const std::vector<float> note = rank_data(r, 16, 77);
    if (r == 0)
      if (auto s = comm.send(note.data(), note.size(), 1); !s) return "p2p send: " + describe(s);
    std::string report;
    for (size_t k = 0; k < sizes.size(); ++k) {
      const size_t n = sizes[k];
      std::vector<float> data = rank_data(r, n, k), expected = rank_data(0, n, k), reversed = rank_data(world - 1, n, k);
      for (int q = 1; q < world; ++q) {
        const std::vector<float> other = rank_data(q, n, k), mirror = rank_data(world - 1 - q, n, k);
        for (size_t i = 0; i < n; ++i) {
          expected[i] += other[i];
          reversed[i] += mirror[i];
        }
      }
      if (auto s = comm.all_reduce_sum(data.data(), n); !s) return "all-reduce: " + describe(s);
      if (std::memcmp(data.data(), expected.data(), n * sizeof(float)) != 0)
        return "all-reduce of " + std::to_string(n) + " floats differs from the sum in rank order";
      // With three ranks or more the data must be able to tell the orders apart, or the check above proves nothing.
      if (world >= 3 && n >= 1000 && std::memcmp(data.data(), reversed.data(), n * sizeof(float)) == 0)
        return "the test data does not depend on the order of the sum";
      report += std::to_string(fnv1a(data)) + " ";
    }
    if (r == 1) {
      std::vector<float> got(16);
      if (auto s = comm.recv(got.data(), got.size(), 0); !s) return "p2p recv: " + describe(s);
      if (got != rank_data(0, 16, 77)) return "the p2p message mixed with the collectives";
    }
    return report;
  });
  const auto out = ranks.finish();
  ASSERT_EQ(out[0].find_first_not_of("0123456789 "), std::string::npos) << out[0];
  for (int r = 1; r < world; ++r) EXPECT_EQ(out[static_cast<size_t>(r)], out[0]) << "rank " << r;
}

TEST(UcxCommunicator, AllReduceOfTwoRanksIsBitIdenticalAndInRankOrder) {
  REQUIRE_UCX();
  all_reduce_in_processes(2);
}

TEST(UcxCommunicator, AllReduceOfThreeRanksIsBitIdenticalAndInRankOrder) {
  REQUIRE_UCX();
  all_reduce_in_processes(3);
}

TEST(UcxCommunicator, ARankThatStartsOneSecondLateStillConnects) {
  REQUIRE_UCX();
  const group g(3);
  rank_processes ranks(3, [&](int r, int) -> std::string {
    // Rank 1 is late both for rank 0, which connects to it, and for rank 2, which it connects to.
    if (r == 1) std::this_thread::sleep_for(1s);
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    float x = static_cast<float>(r + 1);
    if (auto s = (*c)->all_reduce_sum(&x, 1); !s) return describe(s);
    return x == 6.0f ? "ok" : "sum " + std::to_string(x);
  });
  const auto out = ranks.finish();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(out[static_cast<size_t>(r)], "ok") << "rank " << r;
}

TEST(UcxCommunicator, AKilledPeerFailsPendingAndLaterCallsWithinTheTimeout) {
  REQUIRE_UCX();
  const group g(2);
  const auto timeout = 3000ms;
  rank_processes ranks(2, [&](int r, int fd) -> std::string {
    auto c = make_ucx_communicator(g.options(r, timeout));
    if (!c) return c.error().what();
    if (r == 1) {
      rank_processes::write_all(fd, "connected\n");
      std::this_thread::sleep_for(60s);  // killed before this ends
      return "still alive";
    }
    std::string report;
    std::vector<float> buf(1000, 1.0f);
    auto call = [&](const char* name, const std::function<status()>& f) {
      const steady::time_point t = steady::now();
      const status s = f();
      report += std::string(name) + " " + (s ? "ok" : to_string(s.error().code())) + " " +
                std::to_string(ms_since(t)) + " " + (s ? "" : s.error().message()) + "\n";
    };
    call("recv", [&] { return (*c)->recv(buf.data(), buf.size(), 1); });  // pending when the peer dies
    call("send", [&] { return (*c)->send(buf.data(), buf.size(), 1); });
    call("all_reduce", [&] { return (*c)->all_reduce_sum(buf.data(), buf.size()); });
    return report;
  });
  ASSERT_TRUE(ranks.wait_for(1, "connected", 10s));
  std::this_thread::sleep_for(200ms);  // rank 0 is in its receive by now
  ranks.kill_rank(1);
  const auto out = ranks.finish();
  std::istringstream lines(out[0]);
  std::string line;
  for (const char* name : {"recv", "send", "all_reduce"}) {
    ASSERT_TRUE(std::getline(lines, line)) << out[0];
    std::istringstream fields(line);
    std::string op, code;
    long ms = 0;
    fields >> op >> code >> ms;
    EXPECT_EQ(op, name);
    EXPECT_EQ(code, "unavailable") << line;
    EXPECT_LE(ms, timeout.count() + 500) << line;
    EXPECT_NE(line.find("rank 1 (n1)"), std::string::npos) << line;
  }
}

TEST(UcxCommunicator, AReceiveNobodyAnswersTimesOutNamingThePeer) {
  REQUIRE_UCX();
  const group g(2);
  rank_processes ranks(2, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r, r == 0 ? 300ms : 5000ms));
    if (!c) return c.error().what();
    std::vector<float> buf(8);
    const steady::time_point t = steady::now();
    const status first = (*c)->recv(buf.data(), buf.size(), 1 - r);
    const long ms = ms_since(t);
    if (r == 1) return first ? "rank 0 sent something" : "failed";
    const status later = (*c)->send(buf.data(), buf.size(), 1);
    return std::to_string(ms) + "\n" + describe(first) + "\n" + describe(later);
  });
  const auto out = ranks.finish();
  std::istringstream lines(out[0]);
  long ms = 0;
  std::string first, later;
  lines >> ms;
  lines.ignore();
  std::getline(lines, first);
  std::getline(lines, later);
  EXPECT_GE(ms, 300);
  EXPECT_LT(ms, 1500);
  EXPECT_NE(first.find("unavailable"), std::string::npos) << first;
  EXPECT_NE(first.find("timed out"), std::string::npos) << first;
  EXPECT_NE(first.find("rank 1 (n1)"), std::string::npos) << first;
  EXPECT_NE(later.find("unavailable"), std::string::npos) << later;  // the peer stays failed
  EXPECT_EQ(out[1], "failed");  // rank 0 gave up on it, then left
}

TEST(UcxCommunicator, PeersWithDifferentWorldSizesAreRefused) {
  REQUIRE_UCX();
  const group g(3);
  rank_processes ranks(2, [&](int r, int) -> std::string {
    // Rank 0 counts two ranks, rank 1 three.
    const steady::time_point t = steady::now();
    auto c = make_ucx_communicator(g.options(r, 10s, r == 0 ? 2 : 3));
    if (c) return "connected";
    return std::to_string(ms_since(t)) + " " + c.error().what();
  });
  const auto out = ranks.finish();
  for (int r = 0; r < 2; ++r) {
    const std::string& o = out[static_cast<size_t>(r)];
    EXPECT_NE(o.find("unavailable"), std::string::npos) << o;
    EXPECT_NE(o.find("world size"), std::string::npos) << o;
    EXPECT_NE(o.find(r == 0 ? "group of 3 ranks" : "group of 2 ranks"), std::string::npos) << o;
    EXPECT_LT(std::stol(o), 5000) << o;  // refused at once, not left to the connect timeout
  }
}

TEST(UcxCommunicator, APeerThatNeverComesIsNamedWhenConnectingGivesUp) {
  REQUIRE_UCX();
  // Alone, either rank waits for a peer that never publishes its address.
  for (int alone : {0, 1}) {
    const group g(2);
    rank_processes ranks(1, [&](int, int) -> std::string {
      ucx_options o = g.options(alone);
      o.connect_timeout = 500ms;
      const steady::time_point t = steady::now();
      auto c = make_ucx_communicator(o);
      if (c) return "connected";
      return std::to_string(ms_since(t)) + " " + c.error().what();
    });
    const std::string o = ranks.finish()[0];
    const int other = 1 - alone;
    EXPECT_NE(o.find("unavailable"), std::string::npos) << o;
    EXPECT_NE(o.find("no connection within 500 ms: rank " + std::to_string(other) + " (" + group::name(other) + "): no address"),
              std::string::npos)
        << o;
    EXPECT_GE(std::stol(o), 500) << o;
    EXPECT_LT(std::stol(o), 3000) << o;
  }
}

// Waits until `p` exists; false after `limit`.
bool wait_for_file(const std::filesystem::path& p, std::chrono::milliseconds limit) {
  const steady::time_point until = steady::now() + limit;
  while (!std::filesystem::exists(p)) {
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Both ranks check the group with an all-reduce of a small and a large buffer and a send each way.
std::string exercise(communicator& comm) {
  for (const size_t n : {size_t{1000}, size_t{1} << 20}) {
    std::vector<float> data(n, static_cast<float>(comm.rank() + 1));
    if (auto s = comm.all_reduce_sum(data.data(), n); !s) return "all-reduce: " + describe(s);
    if (data.front() != 3.0f || data.back() != 3.0f) return "all-reduce sum " + std::to_string(data.front());
  }
  std::vector<float> note = rank_data(comm.rank(), 64, 5), got(64);
  if (auto s = comm.send(note.data(), note.size(), 1 - comm.rank()); !s) return "send: " + describe(s);
  if (auto s = comm.recv(got.data(), got.size(), 1 - comm.rank()); !s) return "recv: " + describe(s);
  return got == rank_data(1 - comm.rank(), 64, 5) ? "ok" : "the message differs";
}

// A stranger on the network sends garbage (16 bytes of 0xFF, random bytes, a header of zeros, a
// connection that says nothing) to every TCP port a rank listens on: first while rank 1 waits for
// rank 0 to join, then to both ranks while they serve. Neither aborts, and the group works after
// each. (UCX 1.13's socket-address listener, used before, asserted on the 16 bytes: exit 134.)
TEST(UcxCommunicator, GarbageOnEveryListeningPortIsSurvivedWhileFormingAndServing) {
  REQUIRE_UCX();
  const group g(2);
  const auto go = std::filesystem::temp_directory_path() / ("troupe_ucx_go_" + std::to_string(::getpid()));
  std::filesystem::remove_all(go);
  std::filesystem::create_directories(go);
  rank_processes ranks(2, [&](int r, int fd) -> std::string {
    if (r == 0 && !wait_for_file(go / "join", 20s)) return "never told to join";
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    if (const std::string e = exercise(**c); e != "ok") return "before: " + e;
    rank_processes::write_all(fd, "serving\n");
    if (!wait_for_file(go / "again", 20s)) return "never told to go on";
    const std::string e = exercise(**c);
    return e == "ok" ? "ok" : "after: " + e;
  });
  auto attack = [&](int r) {
    const auto socks = test::listening_sockets(ranks.pid(r));
    EXPECT_FALSE(socks.empty()) << "rank " << r << " listens nowhere";
    for (const auto& s : socks) EXPECT_GT(test::send_garbage(s.port), 0) << "rank " << r << " on " << s.text();
  };
  // Rank 1 has published its address once its UCX worker (and whatever it listens on) is up.
  EXPECT_TRUE(wait_for_file(g.address_file(1), 5s));
  attack(1);
  std::ofstream(go / "join").put('\n');
  ASSERT_TRUE(ranks.wait_for(0, "serving", 20s));
  ASSERT_TRUE(ranks.wait_for(1, "serving", 20s));
  attack(0);
  attack(1);
  std::ofstream(go / "again").put('\n');
  const auto out = ranks.finish();
  std::filesystem::remove_all(go);
  EXPECT_EQ(out[0], "serving\nok");
  EXPECT_EQ(out[1], "serving\nok");
}

// With host 127.0.0.1, nothing of UCX listens on another interface (it did on every one before).
TEST(UcxCommunicator, EveryListeningSocketOfARankIsOnItsHost) {
  REQUIRE_UCX();
  const group g(2);
  rank_processes ranks(2, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    std::string report;
    for (const auto& s : test::listening_sockets(::getpid())) report += s.text() + " ";
    if (const std::string e = exercise(**c); e != "ok") return e;
    return report;
  });
  const auto out = ranks.finish();
  for (int r = 0; r < 2; ++r) {
    const std::string& o = out[static_cast<size_t>(r)];
    EXPECT_NE(o.find("127.0.0.1:"), std::string::npos) << "rank " << r << ": " << o;
    std::istringstream words(o);
    for (std::string w; words >> w;) EXPECT_EQ(w.rfind("127.0.0.1:", 0), 0u) << "rank " << r << " listens on " << w;
  }
}

// The data plane's speed between two processes: median time of an all-reduce of 64 KiB (one round,
// all-to-all) and of 16 MiB (reduce-scatter + all-gather), after warm-up. Run on demand:
//   test_runtime_comm --gtest_also_run_disabled_tests --gtest_filter='*AllReduceTimes*'
TEST(UcxCommunicator, DISABLED_AllReduceTimes) {
  REQUIRE_UCX();
  const group g(2);
  rank_processes ranks(2, [&](int r, int) -> std::string {
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    std::string report;
    for (const size_t bytes : {size_t{64} << 10, size_t{16} << 20}) {
      std::vector<float> data(bytes / sizeof(float), 1.0f);
      std::vector<double> ms;
      for (int i = 0; i < 60; ++i) {
        const steady::time_point t = steady::now();
        if (auto s = (*c)->all_reduce_sum(data.data(), data.size()); !s) return describe(s);
        ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - t).count());
      }
      ms.erase(ms.begin(), ms.begin() + 10);
      std::sort(ms.begin(), ms.end());
      report += std::to_string(bytes >> 10) + " KiB: median " + std::to_string(ms[ms.size() / 2]) + " ms, best " +
                std::to_string(ms.front()) + " ms\n";
    }
    return report;
  });
  const auto out = ranks.finish(60s);
  std::cout << "rank 0:\n" << out[0] << "rank 1:\n" << out[1];
  EXPECT_NE(out[0].find("median"), std::string::npos) << out[0];
}

// Known hole, kept as a record (disabled: it fails). UCX 1.13.1's TCP transport drops a connection
// whose first 8 bytes are not its magic number (tcp_ep.c:1553), which is why garbage is survived,
// but a stranger who sends that public magic (0xCAFEBABE12345678) and then a frame header longer
// than the receive segment trips `ucs_assertv(hdr->length <= rx_seg_size - sizeof(*hdr))` in
// uct_tcp_ep_progress_am_rx (src/uct/tcp/tcp_ep.c:1404; Debian builds UCX with assertions): the
// rank aborts. No UCX 1.13 setting checks frames; the listener is only limited to the configured
// interface, which a firewall must then restrict to the cluster's hosts.
TEST(UcxCommunicator, DISABLED_KnownHole_ACraftedUcxTcpFrameAbortsARank) {
  REQUIRE_UCX();
  const group g(2);
  rank_processes ranks(2, [&](int r, int) -> std::string {
    if (r == 0) std::this_thread::sleep_for(3s);
    auto c = make_ucx_communicator(g.options(r));
    if (!c) return c.error().what();
    return exercise(**c);
  });
  EXPECT_TRUE(wait_for_file(g.address_file(1), 5s));
  for (const auto& s : test::listening_sockets(ranks.pid(1))) {
    const int fd = test::connect_loopback(s.port);
    std::string pkt(8 + 5, '\0');  // magic, then uct_tcp_am_hdr_t {am_id, length}
    const uint64_t magic = 0xCAFEBABE12345678ull;
    std::memcpy(pkt.data(), &magic, 8);
    pkt[8] = 0;  // am id
    const uint32_t len = 0xFFFFFFFFu;
    std::memcpy(pkt.data() + 9, &len, 4);
    ::send(fd, pkt.data(), pkt.size(), MSG_NOSIGNAL);
    std::this_thread::sleep_for(200ms);
    ::close(fd);
  }
  const auto out = ranks.finish();
  EXPECT_EQ(out[1], "ok");
}

}  // namespace
}  // namespace troupe
