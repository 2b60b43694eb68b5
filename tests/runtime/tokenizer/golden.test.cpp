// Every case of every golden tokenizer file must match exactly: ids, decoded text, round trip.

#include <gtest/gtest.h>

#include "golden_support.hpp"
#include "runtime/format/gguf.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {
namespace {

using testing::golden_case;
using testing::models_dir;
using testing::read_golden;

std::unique_ptr<tokenizer> load_or_fail(const std::filesystem::path& path) {
  auto t = load_tokenizer(path);
  if (!t) {
    ADD_FAILURE() << "loading " << path << ": " << t.error().what();
    return nullptr;
  }
  return std::move(*t);
}

// Checks encode, decode and round trip of every case; returns how many cases matched fully.
size_t check_cases(const tokenizer& tok, const std::vector<golden_case>& cases, const std::string& label) {
  size_t passed = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(label + " case " + c.id);
    const std::vector<int32_t> ids = tok.encode(c.text);
    EXPECT_EQ(ids, c.ids) << "encode mismatch for case " << c.id;
    const std::string decoded = tok.decode(c.ids);
    EXPECT_EQ(decoded, c.decoded) << "decode mismatch for case " << c.id;
    bool ok = ids == c.ids && decoded == c.decoded;
    if (c.roundtrip) {
      EXPECT_EQ(tok.decode(ids), c.text) << "round trip failed for case " << c.id;
      ok = ok && tok.decode(ids) == c.text;
    }
    passed += ok ? 1 : 0;
  }
  return passed;
}

void run_golden(const std::filesystem::path& model, const std::string& golden) {
  auto tok = load_or_fail(model);
  ASSERT_NE(tok, nullptr);
  const auto cases = read_golden(golden);
  ASSERT_FALSE(cases.empty());
  const size_t passed = check_cases(*tok, cases, golden);
  std::printf("[ golden ] %s via %s: %zu/%zu cases\n", golden.c_str(), model.filename().c_str(), passed, cases.size());
  EXPECT_EQ(passed, cases.size());
}

TEST(tokenizer_golden, stories260k_gguf_matches_llama_cpp) {
  run_golden(models_dir() / "stories260K" / "stories260K.gguf", "stories260K_gguf_dev.json");
}

TEST(tokenizer_golden, stories260k_tok512_model_matches_sentencepiece) {
  run_golden(models_dir() / "stories260K" / "tok512.model", "stories260K_spm_dev.json");
}

TEST(tokenizer_golden, stories260k_hf_tokenizer_model_matches_sentencepiece) {
  // The hf/ folder holds only tokenizer.model: the directory loader must find it.
  run_golden(models_dir() / "stories260K" / "hf", "stories260K_spm_dev.json");
}

TEST(tokenizer_golden, llama2_gguf_matches_llama_cpp) {
  run_golden(models_dir() / "llama2-tiny-random" / "llama-2-tiny-random.gguf", "llama2_dev.json");
}

TEST(tokenizer_golden, smollm2_tokenizer_json_matches_hugging_face) {
  run_golden(models_dir() / "smollm2-135m-tokenizer", "smollm2_dev.json");
}

TEST(tokenizer_golden, stories260k_llama2c_bin_encodes_as_gguf) {
  // tok512.bin holds the same vocabulary as the GGUF; llama2.c behaves as llama.cpp (whitespace kept).
  auto tok = load_tokenizer(models_dir() / "stories260K" / "tok512.bin", 512);
  ASSERT_TRUE(tok) << tok.error().what();
  const auto cases = read_golden("stories260K_gguf_dev.json");
  ASSERT_FALSE(cases.empty());
  const size_t passed = check_cases(**tok, cases, "tok512.bin");
  std::printf("[ golden ] stories260K_gguf_dev.json via tok512.bin: %zu/%zu cases\n", passed, cases.size());
  EXPECT_EQ(passed, cases.size());
}

TEST(tokenizer_golden, smollm2_chat_renderings_encode_as_hugging_face) {
  auto tok = load_or_fail(models_dir() / "smollm2-135m-tokenizer" / "tokenizer.json");
  ASSERT_NE(tok, nullptr);
  std::ifstream in(testing::golden_dir() / "smollm2_chat.json");
  ASSERT_TRUE(in);
  const auto j = nlohmann::json::parse(in);
  size_t n = 0;
  for (const auto& conv : j.at("conversations")) {
    const std::string name = conv.at("name").get<std::string>();
    SCOPED_TRACE("conversation " + name);
    const auto text = conv.at("text").get<std::string>();
    const auto ids = conv.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(text), ids) << "conversation " << name;
    EXPECT_EQ(tok->decode(ids), text) << "conversation " << name;
    ++n;
  }
  EXPECT_GT(n, 0u);
}

}  // namespace
}  // namespace troupe
