// The `routing:` section of the serve config: defaults, every key read, and errors naming the key.
#include <gtest/gtest.h>

#include "runtime/config/serve_config.hpp"
#include "tests/runtime/config/parse_util.hpp"

namespace troupe {
namespace {

const std::string one_model = "models:\n  - {name: a, path: a.gguf}\n";

using test::error_of;
using test::parse;

TEST(ServeConfigRouting, DefaultsToChwblAndTheDeployExampleListsTheDefaults) {
  auto c = parse(one_model);
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->routing.strategy, "chwbl");
  EXPECT_EQ(c->routing.load_factor, 1.25);
  EXPECT_EQ(c->routing.prefix_blocks, 4);
  EXPECT_EQ(c->routing.virtual_nodes, 128);
  auto d = load_serve_config("deploy/troupe.yaml");
  ASSERT_TRUE(d) << d.error().what();
  const routing_config defaults;
  EXPECT_EQ(d->routing.strategy, defaults.strategy);
  EXPECT_EQ(d->routing.load_factor, defaults.load_factor);
  EXPECT_EQ(d->routing.prefix_blocks, defaults.prefix_blocks);
  EXPECT_EQ(d->routing.virtual_nodes, defaults.virtual_nodes);
}

TEST(ServeConfigRouting, EveryKeyIsRead) {
  auto c = parse("routing: {strategy: round-robin, load_factor: 1.5, prefix_blocks: 8, virtual_nodes: 64}\n" + one_model);
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->routing.strategy, "round-robin");
  EXPECT_EQ(c->routing.load_factor, 1.5);
  EXPECT_EQ(c->routing.prefix_blocks, 8);
  EXPECT_EQ(c->routing.virtual_nodes, 64);
  c = parse("routing:\n  strategy: least-loaded\n" + one_model);
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->routing.strategy, "least-loaded");
  EXPECT_EQ(c->routing.load_factor, 1.25);
}

TEST(ServeConfigRouting, ErrorsNameTheKeyAndTheProblem) {
  EXPECT_NE(error_of("routing: {strategy: chwbl, load_factr: 2}\n" + one_model).find("routing.load_factr: unknown key"),
            std::string::npos);
  std::string e = error_of("routing: {strategy: fastest}\n" + one_model);
  EXPECT_NE(e.find("test.yaml: routing.strategy: unknown strategy 'fastest'"), std::string::npos) << e;
  EXPECT_NE(e.find("consistent-hash"), std::string::npos) << e;
  e = error_of("routing: {load_factor: 0.8}\n" + one_model);
  EXPECT_NE(e.find("routing.load_factor: must be in [1, 100]"), std::string::npos) << e;
  e = error_of("routing: {load_factor: lots}\n" + one_model);
  EXPECT_NE(e.find("routing.load_factor: must be a number"), std::string::npos) << e;
  e = error_of("routing: {prefix_blocks: 0}\n" + one_model);
  EXPECT_NE(e.find("routing.prefix_blocks"), std::string::npos) << e;
  e = error_of("routing: {virtual_nodes: 1.5}\n" + one_model);
  EXPECT_NE(e.find("routing.virtual_nodes: must be an integer"), std::string::npos) << e;
  e = error_of("routing: chwbl\n" + one_model);
  EXPECT_NE(e.find("routing: must be a mapping"), std::string::npos) << e;
}

}  // namespace
}  // namespace troupe
