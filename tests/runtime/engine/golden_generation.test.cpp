// Greedy generation of the real stories260K model must reproduce the reference token ids exactly,
// from each of the three file formats that hold the same weights.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/engine/engine.hpp"

namespace troupe {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

struct golden_case {
  std::string id, prompt;
  std::vector<int32_t> prompt_ids, ids;
  int max_tokens;
};

std::vector<golden_case> load_cases() {
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  const auto j = nlohmann::json::parse(in);
  std::vector<golden_case> out;
  for (const auto& c : j.at("cases"))
    out.push_back({c.at("id"), c.at("prompt"), c.at("prompt_ids"), c.at("ids"), c.at("max_tokens")});
  return out;
}

class GoldenGeneration : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenGeneration, GreedyIdsMatchTheReference) {
  engine_options opts;
  opts.model_path = shared_dir + "/models/stories260K/" + GetParam();
  opts.model.threads = 2;
  auto eng = engine::load(opts);
  ASSERT_TRUE(eng) << eng.error().what();
  sampling_params greedy;
  greedy.temperature = 0.0f;
  const auto cases = load_cases();
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const auto prompt = (*eng)->tok().encode_prompt(c.prompt);
    EXPECT_EQ(prompt, c.prompt_ids) << c.id;
    auto r = (*eng)->generate(prompt, greedy, c.max_tokens);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->tokens, c.ids) << "case " << c.id << " from " << GetParam();
    EXPECT_EQ(r->reason, stop_reason::length) << c.id;
    EXPECT_EQ((*eng)->blocks().n_free(), (*eng)->blocks().n_total()) << "blocks leaked after " << c.id;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, GoldenGeneration,
                         ::testing::Values("stories260K.gguf", "stories260K.bin", "hf"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace troupe
