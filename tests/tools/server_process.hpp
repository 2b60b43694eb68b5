#pragma once
// Starts `troupe serve` as a real child process on an ephemeral port, reads the port from its
// "listening on" line, and stops it with SIGTERM (checking that it drains and exits 0).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "tests/tools/run_process.hpp"

namespace troupe::test {

/// Where a server process runs: its working directory and extra environment ("NAME=VALUE").
struct process_env {
  std::string cwd;                ///< "" : the test's own
  std::vector<std::string> vars;
};

class server_process {
 public:
  /// Starts troupe serve with args (plus --port 0); waits up to timeout for it to listen.
  explicit server_process(const std::vector<std::string>& args, std::chrono::seconds timeout = std::chrono::seconds(60),
                          const process_env& where = {}) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      const std::string bin = std::filesystem::absolute(troupe_bin()).string();
      if (!where.cwd.empty() && ::chdir(where.cwd.c_str()) != 0) _exit(126);
      for (const auto& v : where.vars) ::putenv(const_cast<char*>(v.c_str()));
      std::vector<std::string> all{bin, "serve", "--port", "0"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      _exit(127);
    }
    ::close(fds[1]);
    err_fd_ = fds[0];
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::regex listening("listening on http://([0-9.]+):([0-9]+)");
    while (std::chrono::steady_clock::now() < deadline && port_ == 0) {
      pollfd p{err_fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(err_fd_, buf, sizeof buf);
      if (n <= 0) break;  // the child exited
      log_.append(buf, static_cast<size_t>(n));
      std::smatch m;
      if (std::regex_search(log_, m, listening)) port_ = std::stoi(m[2]);
    }
    // Keep draining stderr in the background is unnecessary: the server logs little after start.
    ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
  }

  ~server_process() { stop(); }

  int port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  const std::string& log() const noexcept { return log_; }

  /// SIGTERM, then the exit code (-1 if it had to be killed after the timeout).
  int stop(std::chrono::seconds timeout = std::chrono::seconds(40)) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return exit_code_;
      }
      ::usleep(20000);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = -1;
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int err_fd_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
  std::string log_;
};

}  // namespace troupe::test
