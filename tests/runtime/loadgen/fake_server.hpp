#pragma once
// A scripted HTTP server on loopback for load-generator tests: each connection's request is read
// whole, then a handler writes whatever it likes (a good stream, half a stream, nothing) and the
// connection is closed. Every connection runs on its own thread, so slow handlers overlap.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace troupe::test {

class fake_server {
 public:
  /// Gets the connected socket and the request (headers and body); the server closes it after.
  using handler = std::function<void(int fd, const std::string& request)>;

  explicit fake_server(handler h) : handler_(std::move(h)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 256) != 0) return;
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~fake_server() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& t : workers_) t.join();
    ::close(listen_fd_);
  }

  int port() const noexcept { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const noexcept { return connections_; }
  /// Whether the server is shutting down (a handler that holds a connection open should stop).
  bool stopping() const noexcept { return stop_; }

  static void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  /// The head of a 200 event stream whose body ends when the connection closes.
  static std::string stream_head() {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
  }

  /// Holds the connection open until the client closes it or the server stops.
  void hold(int fd) const {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        char buf[256];
        if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
      }
    }
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, fd] {
        handler_(fd, read_request(fd));
        ::close(fd);
      });
    }
  }

  /// The headers, then as many body bytes as Content-Length says.
  std::string read_request(int fd) const {
    std::string req;
    char buf[4096];
    size_t need = std::string::npos;
    while (!stop_ && (need == std::string::npos || req.size() < need)) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
      const size_t end = req.find("\r\n\r\n");
      if (need == std::string::npos && end != std::string::npos) {
        size_t length = 0;
        for (const char* name : {"Content-Length: ", "content-length: "})
          if (auto at = req.find(name); at != std::string::npos && at < end) length = std::strtoul(req.c_str() + at + std::string_view(name).size(), nullptr, 10);
        need = end + 4 + length;
      }
    }
    return req;
  }

  handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
};

}  // namespace troupe::test
