// `troupe make-model` writes a random-weight GGUF that the other commands load and run;
// `troupe bench-engine` prints one JSON object with positive speeds.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/tools/run_process.hpp"

namespace troupe::test {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

class CliMakeModel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("troupe_make_model_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(CliMakeModel, GeneratedModelLoadsGeneratesAndBenchmarks) {
  for (const std::string dt : {"q8_0", "q4_0", "f16", "bf16"}) {
    const auto out = dir_ / ("tiny-" + dt + ".gguf");
    auto r = run(troupe_bin() + " make-model --shape stories-260k --dtype " + dt + " --seed 3 --out " + out.string() +
                 " --tokenizer-from " + sh_quote(shared_dir + "/models/stories260K/stories260K.gguf"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(std::filesystem::exists(out));

    r = run(troupe_bin() + " inspect --json --model " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto info = nlohmann::json::parse(r.out);
    EXPECT_EQ(info.at("dim"), 64);
    EXPECT_EQ(info.at("vocab_size"), 512);  // the tokenizer's vocabulary
    EXPECT_GT(info.at("tensor_types").at(dt).get<int>(), 0) << info.dump();
    EXPECT_EQ(info.at("tokenizer").at("kind"), "spm");

    r = run(troupe_bin() + " generate --model " + out.string() + " --temperature 0 --max-tokens 8 --prompt 'Once'");
    ASSERT_EQ(r.exit_code, 0) << r.err;

    r = run(troupe_bin() + " bench-engine --no-bandwidth --model " + out.string() +
            " --prompt-tokens 16 --gen-tokens 4 --batch 3 --threads 2");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto b = nlohmann::json::parse(r.out);
    for (const char* key : {"prefill_tok_s", "decode_tok_s", "batch_decode_tok_s", "peak_rss_mb"})
      EXPECT_GT(b.at(key).get<double>(), 0.0) << key;
    EXPECT_EQ(b.at("batch"), 3);
    EXPECT_EQ(b.at("threads"), 2);
    EXPECT_EQ(b.at("dtype"), dt);
  }
}

TEST_F(CliMakeModel, SameSeedWritesTheSameBytes) {
  const auto a = dir_ / "a.gguf", b = dir_ / "b.gguf", c = dir_ / "c.gguf";
  for (const auto& [path, seed] : {std::pair{a, 5}, std::pair{b, 5}, std::pair{c, 6}}) {
    const auto r = run(troupe_bin() + " make-model --shape stories-260k --dtype q8_0 --seed " + std::to_string(seed) +
                       " --out " + path.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(slurp(a), slurp(b));
  EXPECT_NE(slurp(a), slurp(c));
}

TEST_F(CliMakeModel, UnknownShapeOrTypeIsRefusedByName) {
  auto r = run(troupe_bin() + " make-model --shape llama-9000 --dtype q8_0 --out " + (dir_ / "x.gguf").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("llama-9000"), std::string::npos) << r.err;
  r = run(troupe_bin() + " make-model --shape stories-260k --dtype q5_k --out " + (dir_ / "x.gguf").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("q5_k"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace troupe::test
