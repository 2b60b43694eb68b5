#include "runtime/format/safetensors.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "tests/runtime/format/safetensors_builder.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe::format {
namespace {

using troupe::testing::read_all;
using troupe::testing::st_tensor;
using troupe::testing::temp_dir;
using troupe::testing::write_all;
using troupe::testing::write_safetensors;

const std::filesystem::path hf_dir = std::filesystem::path(TROUPE_SHARED_DIR) / "models/stories260K/hf";

TEST(safetensors, stories260k_tensors_are_f32_with_numpy_shapes) {
  auto f = safetensors_file::open(hf_dir / "model.safetensors");
  ASSERT_TRUE(f) << f.error().what();
  const auto* emb = (*f)->tensor("model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, dtype::f32);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(emb->nbytes, 512u * 64u * 4u);
  const auto* up = (*f)->tensor("model.layers.4.mlp.up_proj.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->shape, (std::vector<int64_t>{172, 64}));
}

TEST(safetensors, metadata_and_half_types_are_read) {
  temp_dir dir;
  write_safetensors(dir / "a.safetensors",
                    {{"h", {"F16", {2}, {0x00, 0x3c, 0x00, 0xc0}}}, {"b", {"BF16", {1, 1}, {0x80, 0x3f}}}},
                    {{"format", "pt"}});
  auto f = safetensors_file::open(dir / "a.safetensors");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  ASSERT_NE((*f)->tensor("h"), nullptr);
  EXPECT_EQ((*f)->tensor("h")->type, dtype::f16);
  EXPECT_EQ(fp16_to_fp32(static_cast<const uint16_t*>((*f)->tensor("h")->data)[1]), -2.0f);
  EXPECT_EQ(bf16_to_fp32(*static_cast<const uint16_t*>((*f)->tensor("b")->data)), 1.0f);
}

TEST(safetensors, unsupported_dtype_names_the_tensor) {
  temp_dir dir;
  write_safetensors(dir / "a.safetensors", {{"position_ids", {"I64", {1}, std::vector<uint8_t>(8)}}});
  auto f = safetensors_file::open(dir / "a.safetensors");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::unsupported_type);
  EXPECT_NE(f.error().message().find("'position_ids' has dtype I64"), std::string::npos) << f.error().what();
}

TEST(safetensors, size_not_matching_shape_is_bad_format) {
  temp_dir dir;
  write_safetensors(dir / "a.safetensors", {{"x", {"F32", {3}, std::vector<uint8_t>(8)}}});
  auto f = safetensors_file::open(dir / "a.safetensors");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format);
  EXPECT_NE(f.error().message().find("'x'"), std::string::npos);
}

TEST(safetensors, garbage_header_is_a_clean_error) {
  temp_dir dir;
  auto bytes = read_all(hf_dir / "model.safetensors");
  bytes[9] = '!';  // inside the JSON
  write_all(dir / "a.safetensors", bytes);
  auto f = safetensors_file::open(dir / "a.safetensors");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format);
  uint64_t huge = ~uint64_t{0};
  std::memcpy(bytes.data(), &huge, 8);
  write_all(dir / "a.safetensors", bytes);
  f = safetensors_file::open(dir / "a.safetensors");
  ASSERT_FALSE(f);
}

TEST(safetensors, truncated_copies_fail_cleanly_at_every_cut) {
  temp_dir dir;
  const auto bytes = read_all(hf_dir / "model.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 8 + header_len + 16; i += (i < 64 ? 1 : 13)) cuts.push_back(i);
  for (size_t i = 8 + header_len; i < bytes.size(); i += bytes.size() / 101) cuts.push_back(i);
  cuts.push_back(bytes.size() - 1);
  for (size_t cut : cuts) {
    write_all(dir / "cut.safetensors", bytes.data(), cut);
    auto f = safetensors_file::open(dir / "cut.safetensors");
    ASSERT_FALSE(f) << "cut at " << cut;
    EXPECT_EQ(f.error().code(), errc::truncated) << "cut at " << cut << ": " << f.error().what();
    EXPECT_NE(f.error().message().find("cut.safetensors"), std::string::npos);
  }
}

TEST(safetensors, sharded_checkpoint_follows_the_weight_map) {
  temp_dir dir;
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", {"F32", {1}, {0, 0, 128, 63}}}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"b", {"F32", {1}, {0, 0, 0, 64}}}});
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors"}})";
  auto ck = safetensors_checkpoint::open(dir.path());
  ASSERT_TRUE(ck) << ck.error().what();
  EXPECT_EQ(ck->files().size(), 2u);
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(*static_cast<const float*>(ck->tensor("b")->data), 2.0f);
  EXPECT_EQ(ck->tensor("c"), nullptr);
}

TEST(safetensors, weight_map_naming_a_missing_tensor_or_outside_file_fails) {
  temp_dir dir;
  write_safetensors(dir / "s1.safetensors", {{"a", {"F32", {1}, {0, 0, 128, 63}}}});
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map": {"zz": "s1.safetensors"}})";
  auto ck = safetensors_checkpoint::open(dir.path());
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::not_found);
  EXPECT_NE(ck.error().message().find("'zz'"), std::string::npos);
  std::ofstream(dir / "model.safetensors.index.json", std::ios::trunc)
      << R"({"weight_map": {"a": "../s1.safetensors"}})";
  ck = safetensors_checkpoint::open(dir.path());
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::bad_format);
  std::ofstream(dir / "model.safetensors.index.json", std::ios::trunc)
      << R"({"weight_map": {"a": "missing.safetensors"}})";
  ck = safetensors_checkpoint::open(dir.path());
  ASSERT_FALSE(ck);
  EXPECT_EQ(ck.error().code(), errc::not_found);
}

// ---- data regions (issue 11) ----

// A copy of stories260K's model.safetensors with its JSON header passed through edit (the data
// bytes unchanged, plus extra_data appended).
std::filesystem::path edited_copy(const temp_dir& dir, const std::function<void(nlohmann::json&)>& edit,
                                  size_t extra_data = 0) {
  auto bytes = read_all(hf_dir / "model.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  edit(header);
  const std::string h = header.dump();
  std::vector<char> out(8);
  const uint64_t hn = h.size();
  std::memcpy(out.data(), &hn, 8);
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n), bytes.end());
  out.resize(out.size() + extra_data, 0);
  write_all(dir / "e.safetensors", out);
  return dir / "e.safetensors";
}

void expect_bad(const expected<std::shared_ptr<const safetensors_file>>& f, const std::vector<std::string>& mentions) {
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::bad_format) << f.error().what();
  for (const auto& m : mentions) EXPECT_NE(f.error().message().find(m), std::string::npos) << f.error().what();
}

TEST(safetensors_regions, every_offset_zero_is_an_overlap_naming_both_tensors) {
  temp_dir dir;
  auto path = edited_copy(dir, [](nlohmann::json& h) {
    for (auto& [name, info] : h.items()) {
      if (name == "__metadata__") continue;
      auto& o = info["data_offsets"];
      o = {0, o[1].get<uint64_t>() - o[0].get<uint64_t>()};
    }
  });
  expect_bad(safetensors_file::open(path), {"e.safetensors", "overlaps tensor", "data_offsets [0, "});
}

TEST(safetensors_regions, f32_relabelled_f16_does_not_span_its_offsets) {
  temp_dir dir;
  auto path = edited_copy(dir, [](nlohmann::json& h) { h["model.norm.weight"]["dtype"] = "F16"; });
  expect_bad(safetensors_file::open(path), {"'model.norm.weight' spans 256 bytes but its shape needs 128"});
}

TEST(safetensors_regions, overlapping_regions_name_both_tensors) {
  temp_dir dir;
  auto path = edited_copy(dir, [](nlohmann::json& h) {
    // model.norm.weight moved onto the first 256 bytes of the embeddings.
    const uint64_t at = h["model.embed_tokens.weight"]["data_offsets"][0].get<uint64_t>();
    h["model.norm.weight"]["data_offsets"] = {at, at + 256};
  });
  expect_bad(safetensors_file::open(path), {"overlaps tensor", "'model.embed_tokens.weight' (F32 [512, 64], data_offsets [0, 131072])",
                                            "'model.norm.weight' (F32 [64], data_offsets [0, 256])"});
}

TEST(safetensors_regions, holes_and_trailing_bytes_are_rejected) {
  temp_dir dir;
  // A hole between two tensors.
  auto path = edited_copy(dir, [](nlohmann::json& h) {
    const uint64_t end = h["model.norm.weight"]["data_offsets"][1].get<uint64_t>();
    h["model.norm.weight"]["data_offsets"] = {end, end + 256};  // its old bytes belong to no one now
  }, 256);
  expect_bad(safetensors_file::open(path), {"belong to no tensor", "before tensor 'model.norm.weight'"});
  // Bytes after the last tensor.
  path = edited_copy(dir, [](nlohmann::json&) {}, 4);
  expect_bad(safetensors_file::open(path), {"belong to no tensor", "no holes"});
  // An empty tensor is fine anywhere, a scalar too.
  write_safetensors(dir / "b.safetensors", {{"e", {"F32", {0, 3}, {}}}, {"s", {"F32", {}, std::vector<uint8_t>(4)}}});
  auto f = safetensors_file::open(dir / "b.safetensors");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->tensor("s")->nbytes, 4u);
}

TEST(safetensors_regions, parse_reads_bytes_in_memory) {
  auto bytes = std::make_shared<std::vector<char>>(read_all(hf_dir / "model.safetensors"));
  auto f = safetensors_file::parse(bytes, reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), "mem");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->tensor("model.embed_tokens.weight")->shape, (std::vector<int64_t>{512, 64}));
  f = safetensors_file::parse(bytes, reinterpret_cast<const uint8_t*>(bytes->data()), 7, "mem");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), errc::truncated);
}

}  // namespace
}  // namespace troupe::format
