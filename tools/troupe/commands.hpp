#pragma once
// Each subcommand of `troupe` registers itself on the app; its callback sets the exit code.

#include <CLI/CLI.hpp>
#include <csignal>

#include <string>
#include <utility>

#include "runtime/core/error.hpp"
#include "runtime/engine/engine.hpp"

namespace troupe::cli {

/// Exit code of the subcommand that ran (callbacks write it).
int& exit_code();

/// SIGTERM and SIGINT, blocked in every thread started after the call (call it before any thread
/// starts), so that a long-running command waits for them with wait().
class stop_signals {
 public:
  stop_signals();
  /// Waits for SIGTERM or SIGINT; its name.
  const char* wait();
  /// Waits up to `ms` milliseconds; the signal's name, or nullptr when none came.
  const char* wait_for(long ms);

 private:
  sigset_t set_;
};

void add_generate(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_inspect(CLI::App& app);
void add_make_model(CLI::App& app);
void add_bench_engine(CLI::App& app);
void add_serve(CLI::App& app);
void add_pull(CLI::App& app);
void add_route_sim(CLI::App& app);
void add_node(CLI::App& app);
void add_certs(CLI::App& app);
void add_bench(CLI::App& app);

/// The flags of a command that loads one model into an engine: --model (required), --threads,
/// --device, --tokenizer.
void add_engine_options(CLI::App& cmd, engine_options& e);

/// The model `troupe serve` serves when none is given: $TROUPE_MODEL, the model cache, ../shared.
expected<std::string> default_model();
/// "NAME=PATH" or "PATH" as {name, path}; a bare path is named by its file stem or directory name.
std::pair<std::string, std::string> split_model_arg(const std::string& arg);

}  // namespace troupe::cli
