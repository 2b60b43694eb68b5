// troupe route-sim: the router's strategies on a simulated cluster (runtime/serving/route_sim.hpp):
// prefix-cache hit rate and load balance of chwbl, consistent-hash, least-loaded and round-robin
// for each replica count, as a table on stdout and optionally as JSON.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "runtime/serving/route_sim.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

struct route_sim_args {
  std::vector<int> replicas{8, 64, 512};
  route_sim_config sim;
  std::string json;
};

nlohmann::json to_json(const route_sim_result& r) {
  return {{"strategy", r.strategy},
          {"replicas", r.replicas},
          {"requests", r.requests},
          {"prompt_tokens", r.prompt_tokens},
          {"cached_tokens", r.cached_tokens},
          {"hit_rate", r.hit_rate},
          {"mean_load", r.mean_load},
          {"max_load_time_avg", r.max_load_time_avg},
          {"max_over_mean", r.mean_load > 0 ? r.max_load_time_avg / r.mean_load : 0.0},
          {"peak_load", r.peak_load},
          {"p99_load", r.p99_load},
          {"over_bound", r.over_bound},
          {"mean_service_seconds", r.mean_service_seconds},
          {"measured_seconds", r.measured_seconds}};
}

int run_route_sim_cmd(const route_sim_args& a) {
  const auto& s = a.sim;
  std::printf("# workload: %s conversations, %d system prompts (Zipf), %d-%d turns, cache %lld blocks/replica, "
              "offered load %.1f/replica; load_factor %.3g, prefix_blocks %d, virtual_nodes %d, seed %llu\n",
              s.conversations > 0 ? std::to_string(s.conversations).c_str() : "8 x load per replica", s.system_prompts,
              s.turns_min, s.turns_max, static_cast<long long>(s.cache_blocks), s.load_per_replica, s.routing.load_factor,
              s.routing.prefix_blocks, s.routing.virtual_nodes, static_cast<unsigned long long>(s.seed));
  std::printf("%8s  %-15s  %8s  %8s  %9s  %8s  %8s  %8s  %10s  %10s\n", "replicas", "strategy", "requests", "hit rate",
              "mean load", "max/mean", "peak max", "p99 load", "over bound", "mean svc s");
  nlohmann::json out = nlohmann::json::array();
  for (int n : a.replicas) {
    route_sim_config cfg = a.sim;
    cfg.replicas = n;
    const auto t0 = std::chrono::steady_clock::now();
    auto results = run_route_sim(cfg);
    if (!results) {
      std::fprintf(stderr, "troupe route-sim: %s\n", results.error().what().c_str());
      return 1;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& r : *results) {
      std::printf("%8d  %-15s  %8lld  %7.1f%%  %9.2f  %8.2f  %8lld  %8lld  %9.2f%%  %10.2f\n", r.replicas, r.strategy.c_str(),
                  static_cast<long long>(r.requests), 100.0 * r.hit_rate, r.mean_load,
                  r.mean_load > 0 ? r.max_load_time_avg / r.mean_load : 0.0, static_cast<long long>(r.peak_load),
                  static_cast<long long>(r.p99_load),
                  r.requests > 0 ? 100.0 * static_cast<double>(r.over_bound) / static_cast<double>(r.requests) : 0.0,
                  r.mean_service_seconds);
      out.push_back(to_json(r));
    }
    std::fflush(stdout);
    std::fprintf(stderr, "troupe route-sim: %d replicas simulated in %.1f s\n", n, secs);
  }
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    f << out.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "troupe route-sim: cannot write '%s'\n", a.json.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

void add_route_sim(CLI::App& app) {
  auto args = std::make_shared<route_sim_args>();
  CLI::App* cmd = app.add_subcommand(
      "route-sim", "simulate the router's strategies (chwbl, consistent-hash, least-loaded, round-robin) on a chat workload");
  route_sim_config& s = args->sim;
  cmd->add_option("--replicas", args->replicas, "replica counts, comma-separated")->delimiter(',')->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--conversations", s.conversations, "conversations per run (default: 8 x --load per replica)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", s.seed, "workload seed")->capture_default_str();
  cmd->add_option("--load-factor", s.routing.load_factor, "chwbl bound c")->capture_default_str();
  cmd->add_option("--prefix-blocks", s.routing.prefix_blocks, "16-token blocks in the prefix key")->capture_default_str();
  cmd->add_option("--virtual-nodes", s.routing.virtual_nodes, "ring points per replica")->capture_default_str();
  cmd->add_option("--cache-blocks", s.cache_blocks, "prefix-cache blocks per replica")->capture_default_str();
  cmd->add_option("--system-prompts", s.system_prompts, "shared system prompts")->capture_default_str();
  cmd->add_option("--load", s.load_per_replica, "offered mean in-flight requests per replica")->capture_default_str();
  cmd->add_option("--json", args->json, "also write the results as a JSON array to FILE");
  cmd->callback([args] { exit_code() = run_route_sim_cmd(*args); });
}

}  // namespace troupe::cli
