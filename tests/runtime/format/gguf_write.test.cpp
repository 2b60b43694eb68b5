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

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A small file with every kind of metadata value and tensors of every supported type.
gguf_writer sample_writer() {
  gguf_writer w;
  w.set_str("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 500000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set("signed", gguf_value{int64_t{-5}});
  w.set("big", gguf_value{uint64_t{1} << 40});
  w.set("strings", gguf_value{std::vector<gguf_value>{gguf_value{std::string("a")}, gguf_value{std::string("")}}});
  w.set("floats", gguf_value{std::vector<gguf_value>{gguf_value{0.5}, gguf_value{-2.0}}});
  w.set("ints", gguf_value{std::vector<gguf_value>{gguf_value{int64_t{1}}, gguf_value{int64_t{-3}}}});
  w.set("nested", gguf_value{std::vector<gguf_value>{gguf_value{std::vector<gguf_value>{gguf_value{uint64_t{7}}}}}});
  std::vector<float> m(3 * 5);
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i) * 0.25f;
  w.add_tensor("m", dtype::f32, {3, 5}, f32_bytes(m));
  w.add_tensor("h", dtype::f16, {7}, std::vector<uint8_t>(14, 0x3c));
  w.add_tensor("b", dtype::bf16, {2, 3}, std::vector<uint8_t>(12, 0x41));
  w.add_tensor("q8", dtype::q8_0, {2, 64}, std::vector<uint8_t>(2 * 2 * 34, 0x11));
  w.add_tensor("q4", dtype::q4_0, {1, 32}, std::vector<uint8_t>(18, 0x22));
  return w;
}

TEST(gguf_write, round_trip_keeps_metadata_order_values_and_tensors) {
  temp_dir dir;
  auto w = sample_writer();
  ASSERT_TRUE(w.write(dir / "a.gguf"));
  auto f = gguf_file::open(dir / "a.gguf");
  ASSERT_TRUE(f) << f.error().what();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(*(*f)->find("general.architecture")->as_string(), "llama");
  EXPECT_EQ(std::get<uint64_t>((*f)->find("llama.block_count")->v), 2u);
  EXPECT_EQ(*(*f)->find("llama.rope.freq_base")->as_float(), 500000.0);
  EXPECT_EQ(*(*f)->find("tokenizer.ggml.add_bos_token")->as_bool(), true);
  EXPECT_EQ(std::get<int64_t>((*f)->find("signed")->v), -5);
  EXPECT_EQ(std::get<uint64_t>((*f)->find("big")->v), uint64_t{1} << 40);
  EXPECT_EQ(*(*f)->find("strings")->as_array()->at(1).as_string(), "");
  EXPECT_EQ(*(*f)->find("floats")->as_array()->at(1).as_float(), -2.0);
  EXPECT_EQ(std::get<int64_t>((*f)->find("ints")->as_array()->at(1).v), -3);
  EXPECT_EQ(std::get<uint64_t>((*f)->find("nested")->as_array()->at(0).as_array()->at(0).v), 7u);
  ASSERT_EQ((*f)->tensors().size(), 5u);
  const auto* m = (*f)->tensor("m");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(reinterpret_cast<const float*>(m->data)[14], 14 * 0.25f);
  for (const auto& t : (*f)->tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;
  }
  EXPECT_EQ((*f)->tensor("q8")->nbytes, 2u * 2u * 34u);
  EXPECT_EQ((*f)->tensor("q4")->type, dtype::q4_0);
  EXPECT_EQ(static_cast<const uint8_t*>((*f)->tensor("b")->data)[11], 0x41);

  // Writing what was read gives the same bytes again: order and types are kept.
  gguf_writer w2;
  // metadata() is sorted, so re-add in the original insertion order.
  for (const char* k : {"general.architecture", "llama.block_count", "llama.rope.freq_base",
                        "tokenizer.ggml.add_bos_token", "signed", "big", "strings", "floats", "ints", "nested"})
    w2.set(k, *(*f)->find(k));
  for (const auto& t : (*f)->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    w2.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(p, p + t.nbytes));
  }
  ASSERT_TRUE(w2.write(dir / "b.gguf"));
  EXPECT_EQ(read_all(dir / "a.gguf"), read_all(dir / "b.gguf"));
}

TEST(gguf_write, streaming_tensor_equals_in_memory_tensor) {
  temp_dir dir;
  const int64_t rows = 300, cols = 64;
  std::vector<float> all(rows * cols);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<float>(i % 97) - 40.0f;
  gguf_writer a, b;
  a.add_tensor("t", dtype::f32, {rows, cols}, f32_bytes(all));
  b.add_tensor("t", dtype::f32, {rows, cols}, [&](int64_t first, int64_t n, void* dst) -> status {
    std::memcpy(dst, all.data() + first * cols, static_cast<size_t>(n * cols) * 4);
    return {};
  });
  ASSERT_TRUE(a.write(dir / "a.gguf"));
  ASSERT_TRUE(b.write(dir / "b.gguf"));
  EXPECT_EQ(read_all(dir / "a.gguf"), read_all(dir / "b.gguf"));
}

TEST(gguf_write, wrong_byte_count_is_invalid_argument) {
  temp_dir dir;
  gguf_writer w;
  w.add_tensor("t", dtype::f32, {2, 3}, std::vector<uint8_t>(5));
  auto st = w.write(dir / "x.gguf");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::invalid_argument);
  EXPECT_NE(st.error().message().find("'t'"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
}

TEST(gguf_write, failing_row_source_leaves_no_file) {
  temp_dir dir;
  gguf_writer w;
  w.add_tensor("t", dtype::f32, {2, 3}, [](int64_t, int64_t, void*) -> status {
    return make_error(errc::internal, "boom");
  });
  auto st = w.write(dir / "x.gguf");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "boom");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace troupe::format
