#include "runtime/format/llama2c.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/runtime/format/temp_dir.hpp"

namespace troupe::format {
namespace {

using troupe::testing::read_all;
using troupe::testing::temp_dir;
using troupe::testing::write_all;

const std::filesystem::path stories = std::filesystem::path(TROUPE_SHARED_DIR) / "models/stories260K";

TEST(llama2c, stories260k_header_and_arrays) {
  auto ck = llama2c_checkpoint::open(stories / "stories260K.bin");
  ASSERT_TRUE(ck) << ck.error().what();
  const auto& c = (*ck)->config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_TRUE(c.shared_classifier);
  const auto* wk = (*ck)->array("wk");
  ASSERT_NE(wk, nullptr);
  EXPECT_EQ(wk->shape, (std::vector<int64_t>{5, 32, 64}));
  EXPECT_EQ((*ck)->array("wcls"), nullptr);
  EXPECT_EQ((*ck)->array("freq_cis_real"), nullptr);
}

TEST(llama2c, tokenizer_beside_the_checkpoint_is_found) {
  EXPECT_EQ(find_llama2c_tokenizer(stories / "stories260K.bin"), stories / "tok512.bin");
  temp_dir dir;
  EXPECT_TRUE(find_llama2c_tokenizer(dir / "model.bin").empty());
  write_all(dir / "tokenizer.bin", "x", 1);
  write_all(dir / "tok100.bin", "x", 1);
  EXPECT_EQ(find_llama2c_tokenizer(dir / "model.bin"), dir / "tokenizer.bin");
}

TEST(llama2c, truncated_copies_fail_cleanly_at_every_cut) {
  temp_dir dir;
  const auto bytes = read_all(stories / "stories260K.bin");
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 64; ++i) cuts.push_back(i);
  for (size_t i = 64; i < bytes.size(); i += bytes.size() / 211) cuts.push_back(i);
  cuts.push_back(bytes.size() - 1);
  for (size_t cut : cuts) {
    write_all(dir / "cut.bin", bytes.data(), cut);
    auto ck = llama2c_checkpoint::open(dir / "cut.bin");
    ASSERT_FALSE(ck) << "cut at " << cut;
    EXPECT_EQ(ck.error().code(), errc::truncated) << "cut at " << cut << ": " << ck.error().what();
    EXPECT_NE(ck.error().message().find("cut.bin"), std::string::npos);
  }
}

TEST(llama2c, garbage_headers_are_rejected) {
  temp_dir dir;
  auto bytes = read_all(stories / "stories260K.bin");
  auto patch = [&](size_t field, int32_t v) {
    auto copy = bytes;
    std::memcpy(copy.data() + 4 * field, &v, 4);
    write_all(dir / "p.bin", copy);
    return llama2c_checkpoint::open(dir / "p.bin");
  };
  auto ck = patch(0, 0x616b3432);  // versioned export magic
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::unsupported_type);
  ck = patch(2, -3);  // negative layers
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::bad_format);
  ck = patch(1, 1 << 30);  // absurd hidden_dim
  ASSERT_FALSE(ck);
  ck = patch(4, 3);  // 8 heads do not group into 3 kv heads
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::bad_format);
  bytes.push_back(0);  // one byte too many
  write_all(dir / "p.bin", bytes);
  ck = llama2c_checkpoint::open(dir / "p.bin");
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::bad_format);
}

TEST(llama2c, largest_header_values_cannot_reach_outside_the_file) {
  const auto bytes = read_all(stories / "stories260K.bin");
  // Through the in-memory entry point (what a fuzzer calls), on a copy with one field patched.
  auto parse = [&](size_t field, int32_t v) {
    auto copy = std::make_shared<std::vector<char>>(bytes);
    std::memcpy(copy->data() + 4 * field, &v, 4);
    return llama2c_checkpoint::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), "mem.bin");
  };
  ASSERT_TRUE(parse(1, 172)) << "hidden_dim as it is";
  // The largest values the header check lets through ask for more bytes than the file has.
  for (auto [field, v] : {std::pair{0, 1 << 20}, {1, 1 << 22}, {2, 1024}, {5, 1 << 22}, {5, -(1 << 22)}, {6, 1 << 24}}) {
    auto ck = parse(static_cast<size_t>(field), v);
    ASSERT_FALSE(ck) << field;
    EXPECT_EQ(ck.error().code(), errc::truncated) << ck.error().what();
    EXPECT_NE(ck.error().message().find("mem.bin"), std::string::npos);
  }
  for (auto [field, v] : {std::pair{5, INT32_MIN}, {6, INT32_MAX}, {3, 0}, {4, -1}}) {
    auto ck = parse(static_cast<size_t>(field), v);
    ASSERT_FALSE(ck) << field;
    EXPECT_EQ(ck.error().code(), errc::bad_format) << ck.error().what();
  }
}

}  // namespace
}  // namespace troupe::format
