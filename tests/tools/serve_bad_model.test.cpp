// `troupe serve --model FILE` with a model file that is wrong in one way each (issue 11): the server
// must refuse to start, exit non-zero, and name what is wrong, instead of serving garbage.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "runtime/format/gguf.hpp"
#include "tests/runtime/format/gguf_patch.hpp"
#include "tests/runtime/format/temp_dir.hpp"
#include "tests/tools/run_process.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;
using troupe::testing::gguf_patch;
using troupe::testing::read_all;
using troupe::testing::temp_dir;
using troupe::testing::write_all;

const fs::path stories = fs::path(TROUPE_SHARED_DIR) / "models/stories260K/stories260K.gguf";

// stories260K.gguf rewritten with one metadata key set.
fs::path with_key(const temp_dir& dir, const std::string& key, format::gguf_value value) {
  auto f = format::gguf_file::open(stories);
  EXPECT_TRUE(f);
  format::gguf_writer w;
  for (const auto& [k, v] : (*f)->metadata()) w.set(k, v);
  w.set(key, std::move(value));
  for (const auto& t : (*f)->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    w.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(p, p + t.nbytes));
  }
  const auto path = dir / "key.gguf";
  EXPECT_TRUE(w.write(path));
  return path;
}

void expect_refused(const fs::path& model, const std::vector<std::string>& mentions) {
  // A server that accepts the file would serve until killed: timeout turns that into exit code 124.
  const auto r = run("timeout 60 " + troupe_bin() + " serve --host 127.0.0.1 --port 0 --model " + sh_quote(model.string()));
  EXPECT_NE(r.exit_code, 124) << "the server started on the bad file: " << r.err;
  EXPECT_NE(r.exit_code, 0) << r.err;
  for (const auto& m : mentions) EXPECT_NE(r.err.find(m), std::string::npos) << "missing '" << m << "' in: " << r.err;
}

TEST(serve_bad_model, f32_tensor_relabelled_f16_is_refused_naming_the_tensor) {
  temp_dir dir;
  gguf_patch p(read_all(stories));
  p.put<uint32_t>(p.type_field("blk.0.attn_q.weight"), 1);
  write_all(dir / "relabelled.gguf", p.bytes());
  expect_refused(dir / "relabelled.gguf", {"relabelled.gguf", "tensor 'blk.0.attn_q.weight' (F16 [64, 64]"});
}

TEST(serve_bad_model, every_offset_zero_is_refused_naming_the_tensors) {
  temp_dir dir;
  gguf_patch p(read_all(stories));
  auto f = format::gguf_file::open(stories);
  ASSERT_TRUE(f);
  for (const auto& t : (*f)->tensors()) p.put<uint64_t>(p.offset_field(t.name), 0);
  write_all(dir / "zero.gguf", p.bytes());
  expect_refused(dir / "zero.gguf", {"zero.gguf", "overlaps tensor '"});
}

TEST(serve_bad_model, token_ids_outside_the_vocabulary_are_refused_naming_the_key) {
  temp_dir dir;
  expect_refused(with_key(dir, "tokenizer.ggml.bos_token_id", format::gguf_value{uint64_t{99999}}),
                 {"tokenizer.ggml.bos_token_id is 99999"});
  expect_refused(with_key(dir, "tokenizer.ggml.eos_token_id", format::gguf_value{uint64_t{1} << 31}),
                 {"tokenizer.ggml.eos_token_id is 2147483648"});
}

TEST(serve_bad_model, context_length_2_pow_32_minus_1_is_refused_naming_the_key) {
  temp_dir dir;
  expect_refused(with_key(dir, "llama.context_length", format::gguf_value{uint64_t{4294967295u}}),
                 {"llama.context_length is 4294967295"});
}

}  // namespace
}  // namespace troupe::test
