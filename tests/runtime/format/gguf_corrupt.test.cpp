#include <gtest/gtest.h>

#include <cstring>

#include "runtime/format/gguf.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe::format {
namespace {

using troupe::testing::read_all;
using troupe::testing::temp_dir;
using troupe::testing::write_all;

const std::filesystem::path models = std::filesystem::path(TROUPE_SHARED_DIR) / "models";

// Offsets to cut a file at: every byte of the first 256 (fixed header, first keys), every 7th to
// 4 KiB, every 5th around the tensor infos, then ~150 spread through the rest (metadata, tensor data).
std::vector<size_t> cut_points(size_t size, size_t data_offset) {
  std::vector<size_t> cuts;
  // The tensor infos sit just before the data section.
  for (size_t i = data_offset > 3000 ? data_offset - 3000 : 0; i < data_offset + 64; i += 5) cuts.push_back(i);
  for (size_t i = 0; i < std::min<size_t>(size, 256); ++i) cuts.push_back(i);
  for (size_t i = 256; i < std::min<size_t>(size, 4096); i += 7) cuts.push_back(i);
  for (size_t i = 4096; i < size; i += std::max<size_t>(1, size / 151)) cuts.push_back(i);
  cuts.push_back(size - 1);
  return cuts;
}

void expect_clean_truncation(const std::filesystem::path& original) {
  temp_dir dir;
  const auto bytes = read_all(original);
  ASSERT_FALSE(bytes.empty());
  auto whole = gguf_file::open(original);
  ASSERT_TRUE(whole) << whole.error().what();
  const auto cut_file = dir / "cut.gguf";
  for (size_t cut : cut_points(bytes.size(), (*whole)->data_offset())) {
    write_all(cut_file, bytes.data(), cut);
    auto f = gguf_file::open(cut_file);
    ASSERT_FALSE(f) << "cut at " << cut;
    EXPECT_EQ(f.error().code(), errc::truncated) << "cut at " << cut << ": " << f.error().what();
    EXPECT_NE(f.error().message().find(cut_file.string()), std::string::npos) << f.error().what();
  }
}

TEST(gguf_corrupt, truncated_stories260k_is_a_clean_error_at_every_cut) {
  expect_clean_truncation(models / "stories260K/stories260K.gguf");
}

TEST(gguf_corrupt, truncated_tiny_random_is_a_clean_error_at_every_cut) {
  expect_clean_truncation(models / "llama2-tiny-random/llama-2-tiny-random.gguf");
}

// Patches bytes of a copy of stories260K and opens it.
class gguf_patched : public ::testing::Test {
 protected:
  void SetUp() override { bytes_ = read_all(models / "stories260K/stories260K.gguf"); }
  template <class T>
  void put(size_t at, T v) { std::memcpy(bytes_.data() + at, &v, sizeof(T)); }
  template <class T>
  T get(size_t at) const { T v; std::memcpy(&v, bytes_.data() + at, sizeof(T)); return v; }
  // Where the info of a tensor starts (its name's length field).
  size_t tensor_info(const std::string& name) const {
    std::string needle(8, '\0');
    const uint64_t n = name.size();
    std::memcpy(needle.data(), &n, 8);
    needle += name;
    auto it = std::search(bytes_.begin(), bytes_.end(), needle.begin(), needle.end());
    EXPECT_NE(it, bytes_.end());
    return static_cast<size_t>(it - bytes_.begin());
  }
  expected<std::shared_ptr<const gguf_file>> open() {
    write_all(dir_ / "p.gguf", bytes_);
    return gguf_file::open(dir_ / "p.gguf");
  }
  temp_dir dir_;
  std::vector<char> bytes_;
};

TEST_F(gguf_patched, bad_magic_is_bad_format) {
  bytes_[0] = 'X';
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format);
  EXPECT_NE(f.error().message().find("magic"), std::string::npos);
}

TEST_F(gguf_patched, unknown_version_is_rejected) {
  put<uint32_t>(4, 99);
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find("99"), std::string::npos);
}

TEST_F(gguf_patched, huge_tensor_count_fails_without_allocating) {
  put<uint64_t>(8, ~uint64_t{0});
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::truncated);
}

TEST_F(gguf_patched, huge_metadata_count_fails_without_allocating) {
  put<uint64_t>(16, uint64_t{1} << 60);
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::truncated);
}

TEST_F(gguf_patched, huge_array_count_fails_without_allocating) {
  // tokenizer.ggml.tokens is the first key: u64 len, 21 bytes, u32 type 9, u32 elem 8, u64 count.
  const size_t count_at = 24 + 8 + 21 + 4 + 4;
  ASSERT_EQ(get<uint64_t>(count_at), 512u);
  put<uint64_t>(count_at, uint64_t{1} << 59);
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::truncated);
}

TEST_F(gguf_patched, huge_string_length_fails_without_allocating) {
  put<uint64_t>(24, ~uint64_t{0} - 3);  // length of the first key
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::truncated);
}

TEST_F(gguf_patched, out_of_range_offset_names_the_tensor) {
  const std::string name = "blk.0.attn_q.weight";
  const size_t at = tensor_info(name) + 8 + name.size();
  ASSERT_EQ(get<uint32_t>(at), 2u);  // n_dims
  put<uint64_t>(at + 4 + 16 + 4, uint64_t{1} << 40);
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find(name), std::string::npos) << f.error().what();
  put<uint64_t>(at + 4 + 16 + 4, ~uint64_t{0} - 31);  // aligned, would overflow a sum
  f = open();
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find(name), std::string::npos) << f.error().what();
}

TEST_F(gguf_patched, too_many_dims_is_bad_format) {
  const std::string name = "blk.0.attn_q.weight";
  put<uint32_t>(tensor_info(name) + 8 + name.size(), 7);
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format);
}

TEST_F(gguf_patched, unsupported_type_names_tensor_and_type) {
  const std::string name = "blk.0.attn_q.weight";
  const size_t at = tensor_info(name) + 8 + name.size() + 4 + 16;
  ASSERT_EQ(get<uint32_t>(at), 0u);
  put<uint32_t>(at, 12);  // Q4_K
  auto f = open();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::unsupported_type);
  EXPECT_NE(f.error().message().find("tensor 'blk.0.attn_q.weight' has type Q4_K (12), supported: F32, F16, BF16, Q8_0, Q4_0"),
            std::string::npos) << f.error().message();
}

TEST_F(gguf_patched, bad_alignment_is_bad_format) {
  gguf_writer w;
  w.set_u32("general.alignment", 24);
  ASSERT_TRUE(w.write(dir_ / "a.gguf"));
  auto f = gguf_file::open(dir_ / "a.gguf");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format);
}

}  // namespace
}  // namespace troupe::format
