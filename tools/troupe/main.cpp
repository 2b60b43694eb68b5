// troupe: the one executable, with subcommands.
#include <cstdio>
#include <string>

#include "runtime/core/log.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
int& exit_code() {
  static int code = 0;
  return code;
}

stop_signals::stop_signals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

const char* stop_signals::wait() {
  int sig = 0;
  sigwait(&set_, &sig);
  return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}

const char* stop_signals::wait_for(long ms) {
  const timespec t{ms / 1000, (ms % 1000) * 1000000};
  const int sig = sigtimedwait(&set_, nullptr, &t);
  if (sig < 0) return nullptr;  // timeout, or interrupted by another signal
  return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}
}  // namespace troupe::cli

int main(int argc, char** argv) {
  CLI::App app{"troupe: an actor-model runtime that serves large language models"};
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off (default: $TROUPE_LOG_LEVEL or warn)");
  app.parse_complete_callback([&] { troupe::init_logging(log_level); });
  app.add_subcommand("version", "print the version")->callback([] { std::puts("troupe 0.1.0"); });
  troupe::cli::add_generate(app);
  troupe::cli::add_tokenize(app);
  troupe::cli::add_inspect(app);
  troupe::cli::add_make_model(app);
  troupe::cli::add_bench_engine(app);
  troupe::cli::add_bench(app);
  troupe::cli::add_serve(app);
  troupe::cli::add_pull(app);
  troupe::cli::add_route_sim(app);
  troupe::cli::add_node(app);
  troupe::cli::add_certs(app);
  CLI11_PARSE(app, argc, argv);
  return troupe::cli::exit_code();
}
