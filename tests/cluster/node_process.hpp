#pragma once
// Real cluster nodes for tests: `troupe node` child processes with their stderr in a log file, the
// deploy/cluster configs moved onto free ports, and small HTTP helpers for the gateway.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/tools/run_process.hpp"

namespace troupe::test {

const std::string shared_dir = TROUPE_SHARED_DIR;

/// Whether TCP port p on 127.0.0.1 can be bound now.
inline bool port_free(int p) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(p));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// A config's text with every `port`, `http_port` and `data_port` value moved to a free port below the
/// ephemeral range (a data port to the start of 16 free ones), so tests run beside each other and
/// beside anything on the default ports.
inline std::string on_free_ports(const std::string& yaml) {
  static int next = 20000 + static_cast<int>(::getpid() % 500) * 24;
  auto take = [](int span) {
    for (;; next += span) {
      if (next + span > 32000) next = 20000;
      bool ok = true;
      for (int p = next; p < next + span && ok; ++p) ok = port_free(p);
      if (ok) {
        const int p = next;
        next += span;
        return p;
      }
    }
  };
  const std::regex port_re(R"(\b(http_port|data_port|port): *[0-9]+)");
  std::string out;
  auto begin = std::sregex_iterator(yaml.begin(), yaml.end(), port_re);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    out += yaml.substr(last, static_cast<size_t>(m.position()) - last);
    const std::string key = m[1];
    out += key + ": " + std::to_string(take(key == "data_port" ? 16 : 1));
    last = static_cast<size_t>(m.position() + m.length());
  }
  return out + yaml.substr(last);
}

inline std::string read_text(const std::filesystem::path& p) { return slurp(p); }

/// One `troupe node` process; its stderr goes to a file in dir.
class node_process {
 public:
  node_process(std::string config, std::string name, std::filesystem::path dir)
      : config_(std::move(config)), name_(std::move(name)), log_path_(dir / (name_ + ".log")) {
    start();
  }
  ~node_process() { kill(SIGKILL); }

  void start() {
    const std::string bin = std::filesystem::absolute(troupe_bin()).string();
    const std::string models = std::filesystem::absolute(shared_dir + "/models").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      ::setenv("TROUPE_MODEL_DIR", models.c_str(), 1);
      std::vector<std::string> all{bin, "--log-level", "info", "node", "--config", config_, "--name", name_};
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      _exit(127);
    }
  }

  /// Sends sig; SIGKILL and SIGTERM also reap the process (SIGTERM waits up to 30 s for the drain).
  int kill(int sig) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    if (sig != SIGKILL && sig != SIGTERM) return 0;
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      ::usleep(10000);
    }
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return exit_code_;
  }

  std::string log() const { return read_text(log_path_); }
  pid_t pid() const { return pid_; }
  /// Whether the process has not exited (an exit, a signal included, is recorded for kill()).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }

  /// The exit code once the process has ended by itself (it is reaped then), else -1.
  int exited() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return exit_code_;
  }

 private:
  std::string config_, name_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

/// `troupe certs --config cfg`: the CA and every node's files in the config's tls.dir (none without tls).
inline void make_certs(const std::filesystem::path& cfg) {
  if (read_text(cfg).find("\ntls:") == std::string::npos) return;
  const auto r = run(troupe_bin() + " certs --config " + cfg.string());
  if (r.exit_code != 0) throw std::runtime_error("troupe certs failed: " + r.err);
}

/// Polls pred every 50 ms until it holds or timeout passes; whether it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

/// The value of a Prometheus series (name{labels}) in a /metrics text, or -1.
inline double metric(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

/// POST /v1/completions (greedy); the parsed JSON (discarded on a transport error).
inline nlohmann::json complete(int port, const std::string& model, const std::string& prompt, int max_tokens,
                               int max_time_s = 30) {
  nlohmann::json body{{"model", model}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  const auto r = run("curl -s --max-time " + std::to_string(max_time_s) + " -H 'Content-Type: application/json' --data-binary " +
                     sh_quote(body.dump()) + " http://127.0.0.1:" + std::to_string(port) + "/v1/completions");
  return nlohmann::json::parse(r.out, nullptr, false);
}

inline std::string get(int port, const std::string& path) {
  return run("curl -s --max-time 10 http://127.0.0.1:" + std::to_string(port) + path).out;
}

/// The http_port of the node named `name` in a config text (the first `http_port:` after its name).
inline int http_port_of(const std::string& yaml, const std::string& name) {
  const auto at = yaml.find("name: " + name);
  const std::regex re(R"(http_port: *([0-9]+))");
  std::smatch m;
  const std::string rest = yaml.substr(at);
  return std::regex_search(rest, m, re) ? std::stoi(m[1]) : 0;
}

}  // namespace troupe::test
