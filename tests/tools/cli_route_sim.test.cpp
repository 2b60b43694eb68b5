// `troupe route-sim` prints one table row per replica count and strategy and writes the same
// results as JSON; `troupe serve --routing` refuses a strategy it does not know.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/tools/run_process.hpp"

namespace troupe::test {
namespace {

TEST(CliRouteSim, ASmallRunPrintsEveryStrategyAndWritesJson) {
  const auto json = std::filesystem::temp_directory_path() / ("troupe_route_sim_" + std::to_string(::getpid()) + ".json");
  const auto r = run(troupe_bin() + " route-sim --replicas 4,8 --conversations 96 --seed 3 --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"chwbl", "consistent-hash", "least-loaded", "round-robin"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name << "\n" << r.out;
  EXPECT_NE(r.out.find("hit rate"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(slurp(json));
  std::filesystem::remove(json);
  ASSERT_EQ(j.size(), 8u);
  EXPECT_EQ(j[0]["replicas"], 4);
  EXPECT_EQ(j[0]["strategy"], "chwbl");
  EXPECT_EQ(j[7]["replicas"], 8);
  EXPECT_EQ(j[7]["strategy"], "round-robin");
  for (const auto& row : j) {
    EXPECT_GT(row["requests"].get<int64_t>(), 0) << row.dump();
    EXPECT_GE(row["hit_rate"].get<double>(), 0.0);
    EXPECT_LE(row["hit_rate"].get<double>(), 1.0);
  }
  EXPECT_EQ(j[0]["over_bound"], 0) << "chwbl keeps within its bound";
}

TEST(CliRouteSim, BadValuesAreRefusedNamingThem) {
  auto r = run(troupe_bin() + " route-sim --replicas 4 --load-factor 0.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("load_factor"), std::string::npos) << r.err;
  r = run(troupe_bin() + " serve --port 0 --routing fastest");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--routing"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace troupe::test
