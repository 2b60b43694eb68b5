// troupe: the one executable, with subcommands.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "runtime/core/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"troupe: an actor-model runtime that serves large language models"};
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off (or $TROUPE_LOG_LEVEL)");
  app.add_subcommand("version", "print the version")->callback([] { std::puts("troupe 0.1.0"); });
  CLI11_PARSE(app, argc, argv);
  return 0;
}
