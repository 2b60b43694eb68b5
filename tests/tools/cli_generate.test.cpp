// `troupe generate`, `tokenize` and `inspect` as a user runs them: real processes, real model files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/tools/run_process.hpp"

namespace troupe::test {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;
const std::string stories = shared_dir + "/models/stories260K";

nlohmann::json golden() {
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  return nlohmann::json::parse(in);
}

std::string lstrip(std::string s) {
  s.erase(0, s.find_first_not_of(" \n\t"));
  return s;
}

TEST(CliGenerate, GreedyTextMatchesTheReferenceFromEveryFormat) {
  for (const std::string& model : {stories + "/stories260K.gguf", stories + "/stories260K.bin", stories + "/hf"}) {
    for (const auto& c : golden().at("cases")) {
      std::string cmd = troupe_bin() + " generate --model " + sh_quote(model) + " --temperature 0 --max-tokens " +
                        std::to_string(c.at("max_tokens").get<int>()) + " --threads 2";
      const std::string prompt = c.at("prompt");
      if (!prompt.empty()) cmd += " --prompt " + sh_quote(prompt);
      const auto r = run(cmd);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(lstrip(r.out), lstrip(c.at("text").get<std::string>())) << model << " case " << c.at("id");
    }
  }
}

TEST(CliGenerate, SeededSamplingIsReproducibleAndSeedsDiffer) {
  const std::string base = troupe_bin() + " generate --model " + sh_quote(stories + "/stories260K.gguf") +
                           " --temperature 1.0 --max-tokens 40 --prompt 'Lily' --seed ";
  const auto a = run(base + "42"), b = run(base + "42"), c = run(base + "43");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(CliGenerate, MissingOrBrokenModelGivesAClearErrorNotACrash) {
  auto r = run(troupe_bin() + " generate --model /nonexistent/model.gguf --max-tokens 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  const auto dir = std::filesystem::temp_directory_path() / "troupe_cli_truncated";
  std::filesystem::create_directories(dir);
  const auto cut = dir / "cut.gguf";
  {
    const std::string bytes = slurp(stories + "/stories260K.gguf");
    std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  r = run(troupe_bin() + " generate --model " + cut.string() + " --max-tokens 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

TEST(CliTokenize, PrintsIdsAsJsonAndDecodesThemBack) {
  auto r = run(troupe_bin() + " tokenize --model " + sh_quote(stories + "/stories260K.gguf") + " --text 'Hello world'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({346, 306, 414, 263, 304, 341}));
  r = run(troupe_bin() + " tokenize --model " + sh_quote(stories + "/stories260K.gguf") + " --decode '[346, 306, 414, 263, 304, 341]'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello world\n");
}

TEST(CliTokenize, AcceptsADirectoryHoldingOnlyATokenizer) {
  const auto r = run(troupe_bin() + " tokenize --model " + sh_quote(shared_dir + "/models/smollm2-135m-tokenizer") +
                     " --text '<|im_start|>user'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = nlohmann::json::parse(r.out);
  ASSERT_TRUE(ids.is_array());
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);  // <|im_start|> is one special token
}

TEST(CliInspect, DescribesTheModel) {
  const auto r = run(troupe_bin() + " inspect --json --model " + sh_quote(stories + "/stories260K.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("architecture"), "llama");
  EXPECT_EQ(j.at("dim"), 64);
  EXPECT_EQ(j.at("layers"), 5);
  EXPECT_EQ(j.at("heads"), 8);
  EXPECT_EQ(j.at("kv_heads"), 4);
  EXPECT_EQ(j.at("vocab_size"), 512);
  EXPECT_EQ(j.at("tied_embeddings"), true);
  EXPECT_GT(j.at("parameters").get<int64_t>(), 200000);
  EXPECT_EQ(j.at("tokenizer").at("kind"), "spm");
}

}  // namespace
}  // namespace troupe::test
