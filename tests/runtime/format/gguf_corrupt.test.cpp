#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "runtime/format/gguf.hpp"
#include "tests/runtime/format/gguf_patch.hpp"
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
  gguf_patched() : patch_(read_all(models / "stories260K/stories260K.gguf")), bytes_(patch_.bytes()) {}
  template <class T>
  void put(size_t at, T v) { patch_.put(at, v); }
  template <class T>
  T get(size_t at) const { return patch_.get<T>(at); }
  size_t tensor_info(const std::string& name) const { return patch_.tensor_info(name); }
  size_t type_field(const std::string& name) const { return patch_.type_field(name); }
  size_t offset_field(const std::string& name) const { return patch_.offset_field(name); }
  // The tensors of the unpatched file, by data offset.
  std::vector<gguf_tensor> by_offset() const {
    auto f = gguf_file::open(models / "stories260K/stories260K.gguf");
    EXPECT_TRUE(f);
    auto ts = (*f)->tensors();
    std::sort(ts.begin(), ts.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
    return ts;
  }
  expected<std::shared_ptr<const gguf_file>> open() {
    write_all(dir_ / "p.gguf", bytes_);
    return gguf_file::open(dir_ / "p.gguf");
  }
  temp_dir dir_;
  troupe::testing::gguf_patch patch_;
  std::vector<char>& bytes_;
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

// ---- data regions that do not match the layout (issue 11) ----

void expect_layout_error(const expected<std::shared_ptr<const gguf_file>>& f, const std::vector<std::string>& mentions) {
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format) << f.error().what();
  for (const auto& m : mentions) EXPECT_NE(f.error().message().find(m), std::string::npos) << f.error().what();
}

TEST_F(gguf_patched, every_offset_zero_is_an_overlap_naming_both_tensors) {
  const auto tensors = by_offset();
  for (const auto& t : tensors) put<uint64_t>(offset_field(t.name), 0);
  auto f = open();
  // The sort is stable: the first two infos collide first.
  expect_layout_error(f, {"p.gguf", "overlaps tensor", "at data offset 0"});
}

TEST_F(gguf_patched, f32_tensor_relabelled_f16_names_tensor_type_shape_and_offset) {
  const std::string name = "blk.0.attn_q.weight";
  ASSERT_EQ(get<uint32_t>(type_field(name)), 0u);  // F32
  put<uint32_t>(type_field(name), 1);              // F16: half the bytes its region holds
  const uint64_t offset = get<uint64_t>(offset_field(name));
  auto f = open();
  expect_layout_error(f, {"p.gguf", "tensor '" + name + "' (F16 [64, 64], 8192 bytes at data offset " +
                                        std::to_string(offset) + ") is followed by 8192 bytes that belong to no tensor"});
}

TEST_F(gguf_patched, last_tensor_relabelled_leaves_bytes_before_the_end_of_the_file) {
  const auto last = by_offset().back();
  ASSERT_EQ(last.type, dtype::f32);
  put<uint32_t>(type_field(last.name), 1);
  expect_layout_error(open(), {"'" + last.name + "' (F16", "up to the end of the file"});
}

TEST_F(gguf_patched, overlapping_regions_name_both_tensors) {
  const auto tensors = by_offset();
  const auto& first = tensors.front();
  const auto& moved = tensors.back();  // moved into the first: the overlap comes before its old hole
  ASSERT_GT(first.nbytes, 32u);
  put<uint64_t>(offset_field(moved.name), first.offset + 32);
  expect_layout_error(open(), {"tensor '" + moved.name + "'", "overlaps tensor '" + first.name + "'"});
}

TEST_F(gguf_patched, bytes_before_the_first_tensor_are_an_error) {
  // Shift every tensor by one alignment unit: all still inside the file, none where a writer puts it.
  const auto tensors = by_offset();
  for (const auto& t : tensors) put<uint64_t>(offset_field(t.name), t.offset + 32);
  for (int i = 0; i < 32; ++i) bytes_.push_back(0);
  expect_layout_error(open(), {"starts with 32 bytes that belong to no tensor", "'" + tensors.front().name + "'"});
}

TEST(gguf_layout, shared_models_and_written_files_tile_their_data_sections) {
  for (const char* p : {"stories260K/stories260K.gguf", "llama2-tiny-random/llama-2-tiny-random.gguf"}) {
    auto f = gguf_file::open(models / p);
    EXPECT_TRUE(f) << f.error().what();
  }
  temp_dir dir;
  gguf_writer w;
  w.add_tensor("a", dtype::f32, {3}, std::vector<uint8_t>(12));     // padded to 32
  w.add_tensor("b", dtype::f16, {5, 7}, std::vector<uint8_t>(70));  // padded to 96
  w.add_tensor("c", dtype::f32, {1}, std::vector<uint8_t>(4));      // last: the file ends 28 bytes short of alignment
  ASSERT_TRUE(w.write(dir / "w.gguf"));
  auto f = gguf_file::open(dir / "w.gguf");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->tensor("c")->offset, 32u + 96u);
}

// ---- header values checked before they are used (hand-built files) ----

// Builds GGUF v3 bytes field by field, so a test can write what no writer would.
class gguf_bytes {
 public:
  gguf_bytes(uint64_t n_tensors, uint64_t n_kv) {
    pod<uint32_t>(0x46554747);
    pod<uint32_t>(3);
    pod<uint64_t>(n_tensors);
    pod<uint64_t>(n_kv);
  }
  template <class T>
  gguf_bytes& pod(T v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    return *this;
  }
  gguf_bytes& str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  gguf_bytes& u32_key(const std::string& key, uint32_t v) { return str(key).pod<uint32_t>(4).pod<uint32_t>(v); }
  // A tensor info: ne innermost first, as GGUF stores it.
  gguf_bytes& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
    str(name).pod<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) pod<uint64_t>(n);
    return pod<uint32_t>(type).pod<uint64_t>(offset);
  }
  gguf_bytes& pad_and_data(size_t n) {
    while (bytes_.size() % 32) bytes_.push_back(0);
    bytes_.resize(bytes_.size() + n, 0);
    return *this;
  }
  expected<std::shared_ptr<const gguf_file>> open(const temp_dir& dir) const {
    write_all(dir / "h.gguf", bytes_);
    return gguf_file::open(dir / "h.gguf");
  }
  // The same bytes through the in-memory entry point (what a fuzzer calls).
  expected<std::shared_ptr<const gguf_file>> parse() const {
    auto copy = std::make_shared<std::vector<char>>(bytes_);
    return gguf_file::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), "mem.gguf");
  }

 private:
  std::vector<char> bytes_;
};

void expect_bad(const expected<std::shared_ptr<const gguf_file>>& f, errc code, const std::string& mention) {
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), code) << f.error().what();
  EXPECT_NE(f.error().message().find(mention), std::string::npos) << f.error().what();
}

TEST(gguf_header, a_key_given_twice_is_rejected) {
  temp_dir dir;
  auto b = gguf_bytes(0, 2).u32_key("llama.block_count", 5).u32_key("llama.block_count", 500);
  expect_bad(b.open(dir), errc::bad_format, "'llama.block_count' appears twice");
}

TEST(gguf_header, a_well_formed_hand_built_file_parses_from_memory_and_disk) {
  temp_dir dir;
  auto b = gguf_bytes(1, 1).u32_key("k", 7).tensor("t", {8, 2}, 0, 0).pad_and_data(64);
  auto f = b.open(dir);
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->tensor("t")->shape, (std::vector<int64_t>{2, 8}));
  auto m = b.parse();
  ASSERT_TRUE(m) << m.error().what();
  EXPECT_EQ(*(*m)->find("k")->as_int(), 7);
}

TEST(gguf_header, impossible_tensor_infos_are_rejected_before_use) {
  temp_dir dir;
  expect_bad(gguf_bytes(1, 0).tensor("t", {}, 0, 0).pad_and_data(32).open(dir), errc::bad_format,
             "'t' has 0 dimensions");
  expect_bad(gguf_bytes(1, 0).tensor("t", {4, 0}, 0, 0).pad_and_data(32).open(dir), errc::bad_format,
             "impossible dimension 0");
  // 2^30 * 2^30 elements: each dimension is plausible, the product is not.
  expect_bad(gguf_bytes(1, 0).tensor("t", {uint64_t{1} << 30, uint64_t{1} << 30}, 0, 0).pad_and_data(32).open(dir),
             errc::bad_format, "'t' has an impossible dimension");
  expect_bad(gguf_bytes(1, 0).tensor("t", {~uint64_t{0}}, 0, 0).pad_and_data(32).parse(), errc::bad_format,
             "impossible dimension");
  // Q8_0 rows must be whole blocks of 32.
  expect_bad(gguf_bytes(1, 0).tensor("t", {33}, 8, 0).pad_and_data(64).open(dir), errc::bad_format,
             "not a multiple of 32");
  expect_bad(gguf_bytes(1, 0).tensor("t", {8}, 0, 4).pad_and_data(64).open(dir), errc::bad_format,
             "not a multiple of the alignment");
  expect_bad(gguf_bytes(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).pad_and_data(64).open(dir),
             errc::bad_format, "'t' appears twice");
  expect_bad(gguf_bytes(1, 0).tensor("t", {8}, 0, 0).pad_and_data(16).open(dir), errc::truncated, "tensor 't'");
}

TEST(gguf_header, impossible_metadata_values_are_rejected_before_use) {
  temp_dir dir;
  expect_bad(gguf_bytes(0, 1).str("k").pod<uint32_t>(99).pod<uint32_t>(0).open(dir), errc::bad_format,
             "unknown value type 99");
  expect_bad(gguf_bytes(0, 1).str("k").pod<uint32_t>(7).pod<uint8_t>(2).open(dir), errc::bad_format,
             "bool value of 2");
  expect_bad(gguf_bytes(0, 1).str("k").pod<uint32_t>(9).pod<uint32_t>(42).pod<uint64_t>(1).open(dir),
             errc::bad_format, "array of unknown type 42");
  // Arrays nested 9 deep, each holding one array: the depth limit stops the recursion.
  gguf_bytes deep(0, 1);
  deep.str("k").pod<uint32_t>(9);
  for (int i = 0; i < 9; ++i) deep.pod<uint32_t>(9).pod<uint64_t>(1);
  deep.pod<uint32_t>(4).pod<uint64_t>(1).pod<uint32_t>(0);
  expect_bad(deep.open(dir), errc::bad_format, "nests arrays too deeply");
  // A string longer than the file, inside an array.
  expect_bad(gguf_bytes(0, 1).str("k").pod<uint32_t>(9).pod<uint32_t>(8).pod<uint64_t>(1).pod<uint64_t>(1u << 30).open(dir),
             errc::truncated, "'k'");
}

}  // namespace
}  // namespace troupe::format
