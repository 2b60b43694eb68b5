// Workloads drawn with stories260K's tokenizer: random prompts have the token counts asked for,
// shared-prefix prompts share their group's prefix, multi-turn turns chain, dataset files are
// filtered as vLLM filters ShareGPT, and a seed fixes everything.
#include "runtime/loadgen/workload.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/loadgen/client.hpp"

namespace troupe::loadgen {
namespace {

const std::string model_path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

class LoadgenWorkload : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = load_bench_tokenizer(model_path);
    ASSERT_TRUE(t) << t.error().what();
    tok_ = std::move(*t).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  static const tokenizer& tok() { return *tok_; }
  static tokenizer* tok_;
};
tokenizer* LoadgenWorkload::tok_ = nullptr;

TEST_F(LoadgenWorkload, RandomPromptsHaveTheTokenCountsAskedFor) {
  workload_options o;
  o.num_prompts = 40;
  o.input_len = 64;
  o.output_len = 20;
  o.range_ratio = 0.5;
  o.seed = 5;
  auto items = build_workload(o, tok());
  ASSERT_TRUE(items) << items.error().what();
  ASSERT_EQ(items->size(), 40u);
  std::set<int64_t> lengths;
  int exact = 0;
  for (const auto& it : *items) {
    EXPECT_EQ(static_cast<int64_t>(tok().encode(it.prompt).size()), it.prompt_len);  // the count is the tokenizer's
    EXPECT_GE(it.prompt_len, 32 - 2);
    EXPECT_LE(it.prompt_len, 96 + 2);
    EXPECT_GE(it.output_len, 10);
    EXPECT_LE(it.output_len, 30);
    EXPECT_EQ(it.after, -1);
    lengths.insert(it.prompt_len);
    exact += it.prompt_len >= 32 && it.prompt_len <= 96;
  }
  EXPECT_GE(exact, 38);           // re-encoding rarely misses the target
  EXPECT_GT(lengths.size(), 10u);  // the range ratio spreads them
  auto again = build_workload(o, tok());
  ASSERT_TRUE(again);
  for (size_t i = 0; i < items->size(); ++i) EXPECT_EQ((*again)[i].prompt, (*items)[i].prompt);
  o.seed = 6;
  auto other = build_workload(o, tok());
  ASSERT_TRUE(other);
  EXPECT_NE((*other)[0].prompt, (*items)[0].prompt);
}

TEST_F(LoadgenWorkload, RandomTextHitsExactLengths) {
  auto gen = random_text::create(tok());
  ASSERT_TRUE(gen);
  xoshiro256ss rng(1);
  int exact = 0;
  for (int32_t n : {1, 5, 17, 100, 300}) {
    for (int k = 0; k < 4; ++k) {
      auto [text, count] = gen->make(rng, n);
      EXPECT_EQ(static_cast<int64_t>(tok().encode(text).size()), count);
      EXPECT_NEAR(static_cast<double>(count), n, 2.0);
      exact += count == n;
    }
  }
  EXPECT_GE(exact, 18);
}

TEST_F(LoadgenWorkload, SharedPrefixPromptsStartWithTheirGroupsPrefix) {
  workload_options o;
  o.kind = dataset_kind::shared_prefix;
  o.num_prompts = 30;
  o.num_prefixes = 3;
  o.prefix_len = 40;
  o.suffix_len = 10;
  o.output_len = 8;
  auto items = build_workload(o, tok());
  ASSERT_TRUE(items) << items.error().what();
  ASSERT_EQ(items->size(), 30u);
  // Group prompts by their first 40 tokens: three groups of ten, whose tokens all start alike.
  std::map<std::vector<int32_t>, int> groups;
  std::map<std::vector<int32_t>, int> group_id;
  std::vector<int> sequence;
  for (const auto& it : *items) {
    const auto ids = tok().encode(it.prompt);
    ASSERT_GE(ids.size(), 40u);
    const std::vector<int32_t> key(ids.begin(), ids.begin() + 38);
    ++groups[key];
    group_id.emplace(key, static_cast<int>(group_id.size()));
    sequence.push_back(group_id[key]);
    EXPECT_NEAR(static_cast<double>(it.prompt_len), 50.0, 4.0);
    EXPECT_EQ(it.output_len, 8);
  }
  ASSERT_EQ(groups.size(), 3u);
  for (const auto& [prefix, n] : groups) EXPECT_EQ(n, 10);
  // Shuffled: the groups do not simply take turns.
  std::vector<int> in_turn;
  for (int i = 0; i < 30; ++i) in_turn.push_back(i % 3);
  EXPECT_NE(sequence, in_turn);
}

TEST_F(LoadgenWorkload, MultiTurnTurnsChainAndBodiesCarryTheHistory) {
  workload_options o;
  o.kind = dataset_kind::multi_turn;
  o.num_prompts = 7;  // conversations of 3, 3 and 1 turns
  o.turns = 3;
  o.input_len = 8;
  o.output_len = 4;
  auto items = build_workload(o, tok());
  ASSERT_TRUE(items) << items.error().what();
  ASSERT_EQ(items->size(), 7u);
  // Interleaved by turn: c0 c1 c2 (turn 0), c0 c1 (turn 1), c0 c1 (turn 2).
  const std::vector<int64_t> conv{0, 1, 2, 0, 1, 0, 1}, after{-1, -1, -1, 0, 1, 3, 4};
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ((*items)[i].conversation, conv[i]) << i;
    EXPECT_EQ((*items)[i].after, after[i]) << i;
  }
  std::vector<request_record> recs(7);
  recs[0].generated_text = "reply zero";
  recs[3].generated_text = "reply three";
  body_options b;
  b.model = "m";
  b.api = api_kind::chat;
  const auto body = nlohmann::json::parse(request_body(b, *items, 5, recs));
  const auto& msgs = body.at("messages");
  ASSERT_EQ(msgs.size(), 5u);
  EXPECT_EQ(msgs[0].at("content"), (*items)[0].prompt);
  EXPECT_EQ(msgs[1].at("role"), "assistant");
  EXPECT_EQ(msgs[1].at("content"), "reply zero");
  EXPECT_EQ(msgs[2].at("content"), (*items)[3].prompt);
  EXPECT_EQ(msgs[3].at("content"), "reply three");
  EXPECT_EQ(msgs[4].at("role"), "user");
  EXPECT_EQ(msgs[4].at("content"), (*items)[5].prompt);
  EXPECT_EQ(body.at("max_completion_tokens"), (*items)[5].output_len);
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_EQ(body.at("stream_options").at("include_usage"), true);
  EXPECT_FALSE(body.contains("ignore_eos"));
}

TEST_F(LoadgenWorkload, DatasetFilesAreFilteredAsShareGpt) {
  const auto dir = std::filesystem::temp_directory_path() / ("troupe_loadgen_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string ok_prompt = "Once upon a time there was a little girl named Lily who liked to play";
  const std::string ok_reply = "She went to the park with her mom and saw a big red ball";
  nlohmann::json sharegpt = nlohmann::json::array();
  auto conv = [](const std::string& h, const std::string& g) {
    return nlohmann::json{{"id", "x"}, {"conversations", {{{"from", "human"}, {"value", h}}, {{"from", "gpt"}, {"value", g}}}}};
  };
  sharegpt.push_back(conv(ok_prompt, ok_reply));
  sharegpt.push_back(conv("Hi", ok_reply));            // prompt under 4 tokens
  sharegpt.push_back(conv(ok_prompt, "Ok"));           // completion under 4 tokens
  std::string long_prompt;
  for (int i = 0; i < 400; ++i) long_prompt += "the dog ran ";
  sharegpt.push_back(conv(long_prompt, ok_reply));     // prompt over 1,024 tokens
  sharegpt.push_back({{"id", "one turn"}, {"conversations", {{{"from", "human"}, {"value", ok_prompt}}}}});
  const auto json_path = dir / "sharegpt.json";
  std::ofstream(json_path) << sharegpt.dump();

  workload_options o;
  o.kind = dataset_kind::file;
  o.path = json_path;
  o.num_prompts = 3;
  auto items = build_workload(o, tok());
  ASSERT_TRUE(items) << items.error().what();
  ASSERT_EQ(items->size(), 3u);  // the one valid entry, repeated
  for (const auto& it : *items) {
    EXPECT_EQ(it.prompt, ok_prompt);
    EXPECT_EQ(it.output_len, static_cast<int32_t>(tok().encode(ok_reply).size()));
  }
  // With --output-len the completion's length is not checked: "Ok" passes too.
  o.output_len = 16;
  o.num_prompts = 2;
  items = build_workload(o, tok());
  ASSERT_TRUE(items);
  for (const auto& it : *items) EXPECT_EQ(it.output_len, 16);

  // JSONL with {"prompt": ...} lines.
  const auto jsonl_path = dir / "prompts.jsonl";
  std::ofstream(jsonl_path) << nlohmann::json{{"prompt", ok_prompt}}.dump() << "\n\n"
                            << nlohmann::json{{"prompt", ok_reply}, {"completion", ok_prompt}}.dump() << "\n";
  o.path = jsonl_path;
  o.output_len.reset();
  o.num_prompts = 2;
  items = build_workload(o, tok());
  ASSERT_TRUE(items) << items.error().what();
  std::set<std::string> prompts;
  for (const auto& it : *items) prompts.insert(it.prompt);
  EXPECT_EQ(prompts, (std::set<std::string>{ok_prompt, ok_reply}));

  // Nothing usable is an error that names the filters.
  const auto bad_path = dir / "bad.json";
  std::ofstream(bad_path) << nlohmann::json::array({conv("Hi", "Yo")}).dump();
  o.path = bad_path;
  auto none = build_workload(o, tok());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("filters"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_F(LoadgenWorkload, TokenizerLoadsFromModelFilesAndTokenizerFiles) {
  const std::string dir = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/";
  for (const std::string p : {"stories260K.gguf", "stories260K.bin", "tok512.model"}) {
    auto t = load_bench_tokenizer(dir + p);
    ASSERT_TRUE(t) << p << ": " << t.error().what();
    EXPECT_EQ((*t)->n_vocab(), 512) << p;
  }
  EXPECT_FALSE(load_bench_tokenizer(dir + "no-such-file.gguf"));
}

}  // namespace
}  // namespace troupe::loadgen
