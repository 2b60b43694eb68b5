#pragma once
// Each subcommand of `troupe` registers itself on the app; its callback sets the exit code.

#include <CLI/CLI.hpp>

namespace troupe::cli {

/// Exit code of the subcommand that ran (callbacks write it).
int& exit_code();

void add_generate(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_inspect(CLI::App& app);
void add_make_model(CLI::App& app);
void add_bench_engine(CLI::App& app);
void add_serve(CLI::App& app);
void add_pull(CLI::App& app);

}  // namespace troupe::cli
