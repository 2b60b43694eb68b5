#pragma once
// What an attacker on the network does to a process: find every TCP port it listens on (from
// /proc, by the inodes of its open sockets) and send each one garbage.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace troupe::test {

/// A listening TCP socket: its local address as the kernel shows it ("127.0.0.1", "::") and port.
struct listening_socket {
  std::string host;
  int port = 0;
  std::string text() const { return host + ":" + std::to_string(port); }
};

namespace detail {

inline std::set<unsigned long> socket_inodes(int pid) {
  std::set<unsigned long> inodes;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) inodes.insert(std::stoul(target.substr(8)));
  }
  return inodes;
}

// An address column of /proc/net/tcp{,6}: hex of the address as stored in memory, ':', hex port.
inline std::string host_of(const std::string& hex, bool v6) {
  unsigned char bytes[16] = {};
  const size_t n = v6 ? 16 : 4;
  for (size_t w = 0; w < n / 4; ++w) {
    const uint32_t word = static_cast<uint32_t>(std::stoul(hex.substr(w * 8, 8), nullptr, 16));
    std::memcpy(bytes + w * 4, &word, 4);  // the kernel printed each 32-bit word in host order
  }
  char out[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, out, sizeof out);
  return out;
}

}  // namespace detail

/// Every TCP socket process `pid` listens on (IPv4 and IPv6).
inline std::vector<listening_socket> listening_sockets(int pid) {
  const std::set<unsigned long> inodes = detail::socket_inodes(pid);
  std::vector<listening_socket> out;
  for (const bool v6 : {false, true}) {
    std::ifstream table(v6 ? "/proc/net/tcp6" : "/proc/net/tcp");
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retr;
      unsigned long uid = 0, timeout = 0, inode = 0;
      f >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state != "0A" || !inodes.count(inode)) continue;  // 0A: LISTEN
      const size_t colon = local.find(':');
      out.push_back({detail::host_of(local.substr(0, colon), v6), static_cast<int>(std::stoul(local.substr(colon + 1), nullptr, 16))});
    }
  }
  return out;
}

/// VmRSS of a process in MiB (-1 if unreadable): what a hostile client must not make grow.
inline double rss_mib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

/// Connects to 127.0.0.1:port; -1 if refused.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Sends `port` on 127.0.0.1 each kind of garbage on its own connection: 16 bytes of 0xFF, 4 KiB of
/// random bytes, a header-sized zero block, and a connection that opens and says nothing (left open
/// for `half_open`, then closed). Returns how many connections were accepted.
inline int send_garbage(int port, std::chrono::milliseconds half_open = std::chrono::milliseconds(300)) {
  std::mt19937 rng(static_cast<unsigned>(port));
  std::vector<std::string> payloads = {std::string(16, '\xFF'), std::string(4096, '\0'), std::string(64, '\0')};
  for (char& c : payloads[1]) c = static_cast<char>(rng());
  int accepted = 0;
  for (const std::string& p : payloads) {
    const int fd = connect_loopback(port);
    if (fd < 0) continue;
    ++accepted;
    [[maybe_unused]] const ssize_t n = ::send(fd, p.data(), p.size(), MSG_NOSIGNAL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::close(fd);
  }
  if (const int fd = connect_loopback(port); fd >= 0) {
    ++accepted;
    std::this_thread::sleep_for(half_open);
    ::close(fd);
  }
  return accepted;
}

}  // namespace troupe::test
