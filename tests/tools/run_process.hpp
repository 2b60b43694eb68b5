#pragma once
// Runs a command line through the shell and captures its exit code, stdout and stderr.

#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace troupe::test {

struct process_result {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Single-quotes a word for the shell.
inline std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Safe to call from several threads at once: each call captures into its own pair of files.
inline process_result run(const std::string& cmdline) {
  static std::atomic<unsigned> calls{0};
  const auto dir = std::filesystem::temp_directory_path() / ("troupe_run_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string n = std::to_string(calls.fetch_add(1));
  const auto out = dir / ("out" + n), err = dir / ("err" + n);
  const std::string full = cmdline + " >" + out.string() + " 2>" + err.string() + " </dev/null";
  const int status = std::system(full.c_str());
  process_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::error_code ec;
  std::filesystem::remove(out, ec);
  std::filesystem::remove(err, ec);
  return r;
}

inline std::string troupe_bin() { return std::string(TROUPE_BIN_DIR) + "/troupe"; }

}  // namespace troupe::test
