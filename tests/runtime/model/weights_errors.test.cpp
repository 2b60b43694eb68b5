// Models that are wrong in one way each: the loader must name the problem.

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "runtime/format/gguf.hpp"
#include "runtime/format/safetensors.hpp"
#include "runtime/model/weights.hpp"
#include "tests/runtime/format/safetensors_builder.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using format::gguf_value;
using troupe::testing::read_all;
using troupe::testing::st_tensor;
using troupe::testing::temp_dir;
using troupe::testing::write_all;
using troupe::testing::write_safetensors;

const fs::path stories = fs::path(TROUPE_SHARED_DIR) / "models/stories260K";

struct edit {
  std::function<bool(std::string& key, gguf_value& value)> meta;  ///< false drops the key
  std::function<bool(format::gguf_tensor& t, std::vector<uint8_t>& bytes)> tensor;  ///< false drops it
};

// A copy of stories260K.gguf with metadata and tensors passed through an edit.
fs::path edited_gguf(const temp_dir& dir, const edit& e, const std::vector<std::pair<std::string, gguf_value>>& extra_kv = {},
                     const std::vector<std::pair<format::gguf_tensor, std::vector<uint8_t>>>& extra_tensors = {}) {
  auto f = format::gguf_file::open(stories / "stories260K.gguf");
  EXPECT_TRUE(f);
  format::gguf_writer w;
  for (auto [key, value] : (*f)->metadata()) {
    std::string k = key;
    if (!e.meta || e.meta(k, value)) w.set(k, value);
  }
  for (const auto& [k, v] : extra_kv) w.set(k, v);
  for (auto t : (*f)->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    std::vector<uint8_t> bytes(p, p + t.nbytes);
    if (!e.tensor || e.tensor(t, bytes)) w.add_tensor(t.name, t.type, t.shape, std::move(bytes));
  }
  for (const auto& [t, bytes] : extra_tensors) w.add_tensor(t.name, t.type, t.shape, bytes);
  const auto path = dir / "edited.gguf";
  EXPECT_TRUE(w.write(path));
  return path;
}

std::vector<uint8_t> to_half(const std::vector<uint8_t>& f32, bool bf16) {
  std::vector<uint8_t> out(f32.size() / 2);
  for (size_t i = 0; i < f32.size() / 4; ++i) {
    float x;
    std::memcpy(&x, &f32[i * 4], 4);
    const uint16_t h = bf16 ? fp32_to_bf16(x) : fp32_to_fp16(x);
    std::memcpy(&out[i * 2], &h, 2);
  }
  return out;
}

void expect_error(const expected<model_weights>& w, errc code, const std::vector<std::string>& mentions) {
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), code) << w.error().what();
  for (const auto& m : mentions) EXPECT_NE(w.error().message().find(m), std::string::npos) << w.error().what();
}

TEST(weights_errors, unknown_gguf_architecture_is_named) {
  temp_dir dir;
  auto path = edited_gguf(dir, {[](std::string& k, gguf_value& v) {
    if (k == "general.architecture") v.v = std::string("gpt2");
    return true;
  }, {}});
  expect_error(load_model_weights(path), errc::unsupported_architecture, {"'gpt2'"});
}

TEST(weights_errors, missing_tensor_is_named) {
  temp_dir dir;
  auto path = edited_gguf(dir, {{}, [](format::gguf_tensor& t, auto&) { return t.name != "blk.3.ffn_up.weight"; }});
  expect_error(load_model_weights(path), errc::not_found, {"'blk.3.ffn_up.weight'"});
}

TEST(weights_errors, shape_mismatch_names_tensor_and_both_shapes) {
  temp_dir dir;
  auto path = edited_gguf(dir, {[](std::string& k, gguf_value& v) {
    if (k == "llama.feed_forward_length") v.v = uint64_t{100};
    return true;
  }, {}});
  expect_error(load_model_weights(path), errc::shape_mismatch, {"'blk.0.ffn_gate.weight'", "[172, 64]", "[100, 64]"});
}

TEST(weights_errors, heads_that_do_not_group_are_rejected) {
  temp_dir dir;
  auto path = edited_gguf(dir, {[](std::string& k, gguf_value& v) {
    if (k == "llama.attention.head_count_kv") v.v = uint64_t{3};
    return true;
  }, {}});
  expect_error(load_model_weights(path), errc::bad_format, {"kv heads"});
}

TEST(weights_errors, missing_required_key_is_named) {
  temp_dir dir;
  auto path = edited_gguf(dir, {[](std::string& k, gguf_value&) { return k != "llama.block_count"; }, {}});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.block_count"});
}

TEST(weights_errors, half_precision_norms_become_owned_f32) {
  temp_dir dir;
  auto path = edited_gguf(dir, {{}, [](format::gguf_tensor& t, std::vector<uint8_t>& bytes) {
    if (t.shape.size() == 1) {
      const bool bf = t.name.find("ffn_norm") != std::string::npos;
      bytes = to_half(bytes, bf);
      t.type = bf ? dtype::bf16 : dtype::f16;
    }
    return true;
  }});
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  auto orig = load_model_weights(stories / "stories260K.gguf");
  ASSERT_TRUE(orig);
  for (const char* name : {"blk.2.attn_norm.weight", "blk.2.ffn_norm.weight", "output_norm.weight"}) {
    const auto* t = w->find(name);
    ASSERT_EQ(t->type, dtype::f32) << name;
    EXPECT_EQ(t->nbytes, 64u * 4u);
    const auto* a = static_cast<const float*>(t->data);
    const auto* b = static_cast<const float*>(orig->find(name)->data);
    for (int i = 0; i < 64; ++i) EXPECT_NEAR(a[i], b[i], std::fabs(b[i]) * 1e-2f) << name;
  }
}

TEST(weights_errors, qwen2_gguf_needs_biases_and_uses_neox_rope) {
  temp_dir dir;
  auto rename = [](std::string& k, gguf_value& v) {
    if (k == "general.architecture") v.v = std::string("qwen2");
    if (k.rfind("llama.", 0) == 0) k = "qwen2." + k.substr(6);
    return true;
  };
  auto path = edited_gguf(dir, {rename, {}});
  expect_error(load_model_weights(path), errc::not_found, {"'blk.0.attn_q.bias'"});

  std::vector<std::pair<format::gguf_tensor, std::vector<uint8_t>>> biases;
  for (int l = 0; l < 5; ++l)
    for (auto [name, n] : {std::pair{"attn_q", 64}, {"attn_k", 32}, {"attn_v", 32}}) {
      format::gguf_tensor t;
      t.name = "blk." + std::to_string(l) + "." + name + ".bias";
      t.type = dtype::f32;
      t.shape = {n};
      biases.emplace_back(t, std::vector<uint8_t>(static_cast<size_t>(n) * 4));
    }
  path = edited_gguf(dir, {rename, {}}, {}, biases);
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->hp.architecture, "qwen2");
  EXPECT_TRUE(w->hp.qkv_bias);
  EXPECT_EQ(w->hp.rope, cpu::rope_style::neox);
}

TEST(weights_errors, rope_scaling_in_gguf_is_noted) {
  temp_dir dir;
  format::gguf_tensor t;
  t.name = "rope_freqs.weight";
  t.type = dtype::f32;
  t.shape = {4};
  auto path = edited_gguf(dir, {}, {}, {{t, std::vector<uint8_t>(16)}});
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_TRUE(w->hp.scaling.freq_factors);
  EXPECT_NE(w->find("rope_freqs.weight"), nullptr);

  path = edited_gguf(dir, {}, {{"llama.rope.scaling.type", gguf_value{std::string("llama3")}},
                               {"llama.rope.scaling.factor", gguf_value{8.0}},
                               {"llama.rope.scaling.original_context_length", gguf_value{uint64_t{8192}}}});
  w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_TRUE(w->hp.scaling.llama3);
  EXPECT_EQ(w->hp.scaling.factor, 8.0f);

  path = edited_gguf(dir, {}, {{"llama.rope.scaling.type", gguf_value{std::string("yarn")}},
                               {"llama.rope.scaling.factor", gguf_value{4.0}}});
  expect_error(load_model_weights(path), errc::unsupported_architecture, {"yarn"});
}

// ---- hyper-parameters out of bounds or at odds with the tensors (issue 11) ----

// stories260K.gguf with one key set (added when absent).
fs::path gguf_with(const temp_dir& dir, const std::string& key, gguf_value value) {
  return edited_gguf(dir, {[&](std::string& k, gguf_value&) { return k != key; }, {}}, {{key, std::move(value)}});
}

TEST(weights_errors, context_length_2_pow_32_minus_1_is_rejected_naming_the_key) {
  temp_dir dir;
  auto path = gguf_with(dir, "llama.context_length", gguf_value{uint64_t{4294967295u}});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.context_length is 4294967295", "1 to 16777216"});
  path = gguf_with(dir, "llama.context_length", gguf_value{int64_t{-1}});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.context_length is -1"});
  path = gguf_with(dir, "llama.context_length", gguf_value{uint64_t{max_context_length}});
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->hp.context_length, max_context_length);
}

TEST(weights_errors, huge_head_sizes_are_rejected_before_any_product_is_formed) {
  temp_dir dir;
  // 2^40 * 8 heads would be formed as the q rows; the bound stops it first.
  auto path = edited_gguf(dir, {[](std::string& k, gguf_value&) { return k != "llama.rope.dimension_count"; }, {}},
                          {{"llama.attention.key_length", gguf_value{uint64_t{1} << 40}}});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.attention.key_length", "is 1099511627776"});
  path = gguf_with(dir, "llama.block_count", gguf_value{uint64_t{1} << 31});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.block_count is 2147483648"});
}

TEST(weights_errors, layers_past_block_count_are_named) {
  temp_dir dir;
  auto path = gguf_with(dir, "llama.block_count", gguf_value{uint64_t{3}});
  expect_error(load_model_weights(path), errc::shape_mismatch, {"tensor 'blk.3.", "belongs to layer 3", "llama.block_count is 3"});
}

TEST(weights_errors, llama3_scaling_with_equal_frequency_factors_is_rejected) {
  temp_dir dir;
  auto path = edited_gguf(dir, {}, {{"llama.rope.scaling.type", gguf_value{std::string("llama3")}},
                                    {"llama.rope.scaling.factor", gguf_value{8.0}},
                                    {"llama.rope.scaling.low_freq_factor", gguf_value{4.0}},
                                    {"llama.rope.scaling.high_freq_factor", gguf_value{4.0}}});
  expect_error(load_model_weights(path), errc::bad_format, {"llama.rope.scaling.high_freq_factor must exceed"});
}

// ---- Hugging Face directories ----

// A copy of the stories260K HF directory with config.json edited and tensors optionally rewritten
// (and split over two shards with an index when sharded).
fs::path edited_hf(const temp_dir& dir, const std::function<void(nlohmann::json&)>& cfg_edit,
                   const std::function<bool(const std::string&, st_tensor&)>& tensor_edit = {}, bool sharded = false) {
  const auto out = dir / "hf";
  fs::remove_all(out);
  fs::create_directories(out);
  std::ifstream in(stories / "hf/config.json");
  auto cfg = nlohmann::json::parse(in);
  if (cfg_edit) cfg_edit(cfg);
  std::ofstream(out / "config.json") << cfg.dump(2);
  auto st = format::safetensors_file::open(stories / "hf/model.safetensors");
  EXPECT_TRUE(st);
  std::map<std::string, st_tensor> shards[2];
  nlohmann::json weight_map = nlohmann::json::object();
  int i = 0;
  for (const auto& t : (*st)->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    st_tensor copy{"F32", t.shape, std::vector<uint8_t>(p, p + t.nbytes)};
    if (tensor_edit && !tensor_edit(t.name, copy)) continue;
    const int shard = sharded ? (i++ % 2) : 0;
    weight_map[t.name] = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
    shards[shard][t.name] = std::move(copy);
  }
  if (!sharded) {
    write_safetensors(out / "model.safetensors", shards[0]);
  } else {
    for (int s = 0; s < 2; ++s)
      write_safetensors(out / ("model-0000" + std::to_string(s + 1) + "-of-00002.safetensors"), shards[s]);
    std::ofstream(out / "model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump();
  }
  return out;
}

TEST(weights_errors, sharded_hf_checkpoint_loads_like_the_single_file) {
  temp_dir dir;
  auto path = edited_hf(dir, {}, {}, true);
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  auto orig = load_model_weights(stories / "hf");
  ASSERT_TRUE(orig);
  ASSERT_EQ(w->tensors.size(), orig->tensors.size());
  for (const auto& [name, t] : orig->tensors)
    EXPECT_EQ(std::memcmp(t.data, w->find(name)->data, t.nbytes), 0) << name;
  EXPECT_EQ(w->storage.size(), 2u);
  EXPECT_TRUE(w->tokenizer_path.empty());  // not copied
}

TEST(weights_errors, hf_unknown_model_type_is_named) {
  temp_dir dir;
  auto path = edited_hf(dir, [](nlohmann::json& c) {
    c["model_type"] = "bert";
    c["architectures"] = {"BertModel"};
  });
  expect_error(load_model_weights(path), errc::unsupported_architecture, {"'bert'"});
}

TEST(weights_errors, hf_missing_tensor_names_both_names) {
  temp_dir dir;
  auto path = edited_hf(dir, {}, [](const std::string& name, st_tensor&) {
    return name != "model.layers.2.mlp.down_proj.weight";
  });
  expect_error(load_model_weights(path), errc::not_found, {"'blk.2.ffn_down.weight'", "model.layers.2.mlp.down_proj.weight"});
}

TEST(weights_errors, hf_untied_needs_lm_head_and_bf16_norms_convert) {
  temp_dir dir;
  auto untie = [](nlohmann::json& c) { c["tie_word_embeddings"] = false; };
  auto path = edited_hf(dir, untie);
  expect_error(load_model_weights(path), errc::not_found, {"'output.weight'", "lm_head.weight"});

  auto with_head = [](const std::string& name, st_tensor& t) {
    if (name.find("norm") != std::string::npos) {
      t.bytes = to_half(t.bytes, true);
      t.dtype = "BF16";
    }
    return true;
  };
  path = edited_hf(dir, untie, with_head);
  // Add lm_head as a copy of the embeddings in a second file via an index.
  auto st = format::safetensors_file::open(path / "model.safetensors");
  ASSERT_TRUE(st) << st.error().what();
  const auto* emb = (*st)->tensor("model.embed_tokens.weight");
  const auto* p = static_cast<const uint8_t*>(emb->data);
  write_safetensors(path / "head.safetensors", {{"lm_head.weight", {"F32", emb->shape, std::vector<uint8_t>(p, p + emb->nbytes)}}});
  nlohmann::json wm = nlohmann::json::object();
  for (const auto& t : (*st)->tensors()) wm[t.name] = "model.safetensors";
  wm["lm_head.weight"] = "head.safetensors";
  std::ofstream(path / "model.safetensors.index.json") << nlohmann::json{{"weight_map", wm}}.dump();
  std::ofstream(path / "tokenizer.json") << "{}";
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_FALSE(w->hp.tied_embeddings);
  EXPECT_NE(w->find("output.weight"), nullptr);
  EXPECT_EQ(w->find("blk.0.attn_norm.weight")->type, dtype::f32);
  EXPECT_EQ(w->tokenizer_path, path / "tokenizer.json");
}

TEST(weights_errors, hf_llama3_rope_scaling_and_qwen2_are_read) {
  temp_dir dir;
  auto path = edited_hf(dir, [](nlohmann::json& c) {
    c["rope_theta"] = 500000.0;
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  });
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->hp.rope_theta, 500000.0f);
  EXPECT_TRUE(w->hp.scaling.llama3);
  EXPECT_EQ(w->hp.scaling.factor, 32.0f);
  EXPECT_EQ(w->hp.scaling.original_context, 8192);

  path = edited_hf(dir, [](nlohmann::json& c) {
    c["model_type"] = "qwen2";
    c["architectures"] = {"Qwen2ForCausalLM"};
  });
  expect_error(load_model_weights(path), errc::not_found, {"'blk.0.attn_q.bias'", "self_attn.q_proj.bias"});

  path = edited_hf(dir, [](nlohmann::json& c) { c["num_key_value_heads"] = 3; });
  expect_error(load_model_weights(path), errc::bad_format, {"kv heads"});
  path = edited_hf(dir, [](nlohmann::json& c) { c["hidden_size"] = "64"; });
  expect_error(load_model_weights(path), errc::bad_format, {"hidden_size"});
}

TEST(weights_errors, hf_special_token_ids_outside_the_vocabulary_are_rejected) {
  temp_dir dir;
  auto path = edited_hf(dir, [](nlohmann::json& c) { c["bos_token_id"] = 99999; });
  expect_error(load_model_weights(path), errc::bad_format, {"config.json", "bos_token_id 99999", "vocabulary of 512"});
  path = edited_hf(dir, [](nlohmann::json& c) { c["eos_token_id"] = {2, 2147483648u}; });
  expect_error(load_model_weights(path), errc::bad_format, {"eos_token_id [2,2147483648]"});
  path = edited_hf(dir, [](nlohmann::json& c) { c["pad_token_id"] = "0"; });
  expect_error(load_model_weights(path), errc::bad_format, {"pad_token_id \"0\""});
  path = edited_hf(dir, [](nlohmann::json& c) {
    c["pad_token_id"] = -1;
    c["bos_token_id"] = nullptr;
    c["eos_token_id"] = {1, 511};
  });
  auto w = load_model_weights(path);
  ASSERT_TRUE(w) << w.error().what();
  std::ofstream(path / "generation_config.json") << R"({"eos_token_id": 512})";
  expect_error(load_model_weights(path), errc::bad_format, {"generation_config.json", "eos_token_id 512"});
}

TEST(weights_errors, hf_context_length_and_layer_count_are_checked) {
  temp_dir dir;
  auto path = edited_hf(dir, [](nlohmann::json& c) { c["max_position_embeddings"] = 4294967295u; });
  expect_error(load_model_weights(path), errc::bad_format, {"config.json max_position_embeddings is 4294967295"});
  path = edited_hf(dir, [](nlohmann::json& c) { c["num_hidden_layers"] = 4; });
  expect_error(load_model_weights(path), errc::shape_mismatch,
               {"'model.layers.4.", "belongs to layer 4", "config.json num_hidden_layers is 4"});
}

// ---- llama2.c ----

TEST(weights_errors, llama2c_unshared_classifier_becomes_output_weight) {
  temp_dir dir;
  auto bytes = read_all(stories / "stories260K.bin");
  int32_t vocab = -512;
  std::memcpy(bytes.data() + 20, &vocab, 4);
  // wcls: the embeddings again, but negated so it differs.
  std::vector<float> wcls(512 * 64);
  std::memcpy(wcls.data(), bytes.data() + 28, wcls.size() * 4);
  for (auto& x : wcls) x = -x;
  bytes.insert(bytes.end(), reinterpret_cast<const char*>(wcls.data()),
               reinterpret_cast<const char*>(wcls.data() + wcls.size()));
  write_all(dir / "m.bin", bytes);
  write_all(dir / "tok32.bin", "x", 1);
  auto w = load_model_weights(dir / "m.bin");
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_FALSE(w->hp.tied_embeddings);
  ASSERT_NE(w->find("output.weight"), nullptr);
  EXPECT_EQ(static_cast<const float*>(w->find("output.weight")->data)[5], wcls[5]);
  EXPECT_EQ(w->tokenizer_path, dir / "tok32.bin");
}

}  // namespace
}  // namespace troupe
