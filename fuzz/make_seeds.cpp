// Writes the binary seed files of fuzz/corpus (small synthetic models, handshake messages) with the
// project's own writers:
//   cmake --build build-fuzz --target fuzz_make_seeds && build-fuzz/bin/fuzz_make_seeds fuzz/corpus
// The text seeds (requests, YAML, templates) are committed as they are.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cluster/handshake.pb.h"
#include "fuzz/fuzz_support.hpp"
#include "runtime/format/gguf.hpp"
#include "tests/runtime/format/safetensors_builder.hpp"

namespace fs = std::filesystem;
using namespace troupe;
using format::gguf_value;

namespace {

std::vector<uint8_t> floats(size_t n) {
  std::vector<uint8_t> b(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    const float v = 0.01f * static_cast<float>(i);
    std::memcpy(b.data() + i * sizeof(float), &v, sizeof v);
  }
  return b;
}

gguf_value strings(std::vector<std::string> s) {
  std::vector<gguf_value> v;
  for (auto& x : s) v.push_back(gguf_value{std::move(x)});
  return gguf_value{std::move(v)};
}

gguf_value ints(std::vector<int64_t> s) {
  std::vector<gguf_value> v;
  for (int64_t x : s) v.push_back(gguf_value{x});
  return gguf_value{std::move(v)};
}

// A two-layer-free llama of width 4 with a SentencePiece vocabulary of 8 pieces.
void gguf_spm(const fs::path& path) {
  format::gguf_writer w;
  w.set_str("general.architecture", "llama");
  w.set_u32("llama.embedding_length", 4);
  w.set_u32("llama.block_count", 1);
  w.set_u32("llama.attention.head_count", 2);
  w.set_u32("llama.context_length", 16);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_str("tokenizer.ggml.model", "llama");
  w.set("tokenizer.ggml.tokens", strings({"<unk>", "<s>", "</s>", "<0x0A>", "\xe2\x96\x81", "a", "\xe2\x96\x81" "a", "b"}));
  std::vector<gguf_value> scores;
  for (int i = 0; i < 8; ++i) scores.push_back(gguf_value{static_cast<double>(-i)});
  w.set("tokenizer.ggml.scores", gguf_value{scores});
  w.set("tokenizer.ggml.token_type", ints({2, 3, 3, 6, 1, 1, 1, 1}));
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_str("tokenizer.chat_template", "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
  w.add_tensor("token_embd.weight", dtype::f32, {8, 4}, floats(32));
  w.add_tensor("output_norm.weight", dtype::f32, {4}, floats(4));
  if (!w.write(path)) std::abort();
}

// Byte-level BPE (gpt2) vocabulary with merges and an F16 tensor.
void gguf_bpe(const fs::path& path) {
  format::gguf_writer w;
  w.set_str("general.architecture", "llama");
  w.set_str("tokenizer.ggml.model", "gpt2");
  w.set_str("tokenizer.ggml.pre", "smollm");
  w.set("tokenizer.ggml.tokens", strings({"<|endoftext|>", "<|im_start|>", "<|im_end|>", "h", "i", "hi", "\xc4\xa0", "\xc4\xa0hi"}));
  w.set("tokenizer.ggml.token_type", ints({3, 3, 3, 1, 1, 1, 1, 1}));
  w.set("tokenizer.ggml.merges", strings({"h i", "\xc4\xa0 hi"}));
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_str("tokenizer.chat_template", "<|im_start|>system\nYou are helpful.<|im_end|>");
  w.add_tensor("blk.0.attn_norm.weight", dtype::f16, {4}, std::vector<uint8_t>(8, 0x3c));
  if (!w.write(path)) std::abort();
}

void safetensors(const fs::path& dir) {
  troupe::testing::write_safetensors(dir / "f32_f16_bf16",
                                     {{"a.weight", {"F32", {2, 2}, floats(4)}},
                                      {"b.weight", {"F16", {3}, std::vector<uint8_t>(6, 0x3c)}},
                                      {"c.weight", {"BF16", {1, 2}, std::vector<uint8_t>(4, 0x3f)}}},
                                     {{"format", "pt"}});
  troupe::testing::write_safetensors(dir / "empty", {});
}

// The llama2.c layout of llama2c.cpp: dim 4, hidden 8, 1 layer, 2 heads (2 kv), vocab 4, seq 4.
void llama2c(const fs::path& dir) {
  for (const bool shared : {true, false}) {
    const int32_t D = 4, H = 8, L = 1, heads = 2, kv = 2, V = 4, S = 4;
    const int32_t header[7] = {D, H, L, heads, kv, shared ? V : -V, S};
    const size_t hs = D / heads;
    size_t n = V * D + L * D + L * D * D + 2 * L * kv * hs * D + L * D * D + L * D + 3 * L * H * D + D + S * hs;
    if (!shared) n += V * D;
    std::ofstream out(dir / (shared ? "shared_classifier.bin" : "own_classifier.bin"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    const auto body = floats(n);
    out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
  }
}

void handshake(const fs::path& dir) {
  cluster::wire::Hello h;
  h.set_protocol_version(2);
  h.set_build("troupe 0.1.0");
  h.set_node("w1");
  h.set_cluster("demo");
  h.set_config_digest("0123456789abcdef");
  for (const char* t : {"troupe::sampling_params", "troupe::step_plan", "troupe::router_actor"}) h.add_message_types(t);
  fuzz::write_file(dir / "hello", h.SerializeAsString());
  cluster::wire::HelloReply r;
  r.set_accepted(false);
  r.set_reason("another config");
  *r.mutable_node() = h;
  fuzz::write_file(dir / "reply_refused", r.SerializeAsString());
  r.set_accepted(true);
  r.clear_reason();
  fuzz::write_file(dir / "reply_accepted", r.SerializeAsString());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds CORPUS_DIR\n";
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* d : {"gguf", "safetensors", "llama2c", "handshake"}) fs::create_directories(root / d);
  gguf_spm(root / "gguf" / "spm_vocab");
  gguf_bpe(root / "gguf" / "bpe_vocab");
  safetensors(root / "safetensors");
  llama2c(root / "llama2c");
  handshake(root / "handshake");
  return 0;
}
