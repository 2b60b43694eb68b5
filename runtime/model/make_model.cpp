#include "runtime/model/make_model.hpp"

#include <cmath>
#include <memory>

#include "kernels/cpu/quant.hpp"
#include "runtime/format/gguf.hpp"

namespace troupe {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// llama.cpp's general.file_type for a model whose matrices are all of one type.
uint32_t file_type_of(dtype t) {
  switch (t) {
    case dtype::f32: return 0;
    case dtype::f16: return 1;
    case dtype::q4_0: return 2;
    case dtype::q8_0: return 7;
    case dtype::bf16: return 32;
  }
  return 0;
}

// Uniform on [-a, a] with a = 0.02 * sqrt(3): standard deviation 0.02, like common initialisations.
constexpr float weight_half_range = 0.0346410162f;

// Rows of a random matrix. Each row has its own generator seeded from (seed, tensor, row), so the
// bytes do not depend on how the writer chunks rows.
format::gguf_writer::row_source random_rows(uint64_t seed, uint64_t tensor_id, dtype type, int64_t cols) {
  return [=](int64_t first, int64_t n, void* dst) -> status {
    std::vector<float> row(static_cast<size_t>(cols));
    const size_t rb = row_bytes(type, cols);
    for (int64_t r = 0; r < n; ++r) {
      uint64_t state = splitmix64(seed ^ splitmix64((tensor_id << 40) ^ static_cast<uint64_t>(first + r)));
      for (auto& x : row) {
        // xorshift64*: fast, and good enough for weights nobody reads for meaning.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        const uint64_t bits = state * 0x2545f4914f6cdd1dull;
        const float u = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        x = (2.0f * u - 1.0f) * weight_half_range;
      }
      cpu::quantize_row(type, row.data(), static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * rb, cols);
    }
    return {};
  };
}

format::gguf_writer::row_source ones(int64_t n) {
  return [n](int64_t, int64_t rows, void* dst) -> status {
    auto* f = static_cast<float*>(dst);
    for (int64_t i = 0; i < n * rows; ++i) f[i] = 1.0f;
    return {};
  };
}

}  // namespace

const std::vector<model_shape>& known_model_shapes() {
  static const std::vector<model_shape> shapes = {
      {"stories-260k", 64, 192, 5, 8, 4, 512, 512, 10000.0f, 1e-5f},
      {"llama-110m", 768, 2048, 12, 12, 12, 32000, 1024, 10000.0f, 1e-5f},
      {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 1e-5f},
      {"llama-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, 1e-5f},
  };
  return shapes;
}

std::optional<model_shape> find_model_shape(std::string_view name) {
  for (const auto& s : known_model_shapes())
    if (s.name == name) return s;
  return std::nullopt;
}

expected<make_model_result> make_random_model(const make_model_options& options) {
  auto found = find_model_shape(options.shape);
  if (!found) {
    std::string names;
    for (const auto& s : known_model_shapes()) names += (names.empty() ? "" : ", ") + s.name;
    return make_error(errc::invalid_argument, "unknown model shape '" + options.shape + "' (known: " + names + ")");
  }
  if (options.output.empty()) return make_error(errc::invalid_argument, "make_random_model: no output path");
  model_shape shape = *found;
  const dtype type = options.type;

  format::gguf_writer w;
  w.set_str("general.architecture", "llama");
  w.set_str("general.name", "random " + shape.name);
  w.set_u32("general.file_type", file_type_of(type));

  std::shared_ptr<const format::gguf_file> tok;
  if (!options.tokenizer_from.empty()) {
    auto opened = format::gguf_file::open(options.tokenizer_from);
    if (!opened) return unexpected{opened.error()};
    tok = *opened;
    const auto* tokens = tok->find("tokenizer.ggml.tokens");
    if (!tokens || !tokens->as_array() || tokens->as_array()->empty())
      return make_error(errc::not_found, "'" + options.tokenizer_from.string() + "' has no tokenizer.ggml.tokens");
    // The embeddings must cover every token id the tokenizer can produce.
    shape.n_vocab = static_cast<int64_t>(tokens->as_array()->size());
  }
  const int64_t head_dim = shape.dim / shape.n_heads;
  const int64_t kv_dim = head_dim * shape.n_kv_heads;
  const int64_t q_block = block_elems(type);
  if (shape.dim % q_block != 0 || shape.ffn_dim % q_block != 0)
    return make_error(errc::invalid_argument, "shape '" + shape.name + "' has rows not divisible into " +
                                                  std::string(to_string(type)) + " blocks");

  w.set_u32("llama.context_length", static_cast<uint32_t>(shape.context_length));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(shape.dim));
  w.set_u32("llama.block_count", static_cast<uint32_t>(shape.n_layers));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(shape.ffn_dim));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(shape.n_heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(shape.n_kv_heads));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", shape.norm_eps);
  w.set_f32("llama.rope.freq_base", shape.rope_theta);
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(shape.n_vocab));
  if (tok)
    for (const auto& [key, value] : tok->metadata())
      if (key.rfind("tokenizer.", 0) == 0) w.set(key, value);

  int64_t params = 0;
  uint64_t id = 0;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    w.add_tensor(name, type, {rows, cols}, random_rows(options.seed, id++, type, cols));
    params += rows * cols;
  };
  auto norm = [&](const std::string& name) {
    w.add_tensor(name, dtype::f32, {shape.dim}, ones(shape.dim));
    params += shape.dim;
  };
  matrix("token_embd.weight", shape.n_vocab, shape.dim);
  for (int64_t l = 0; l < shape.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight");
    matrix(p + "attn_q.weight", shape.dim, shape.dim);
    matrix(p + "attn_k.weight", kv_dim, shape.dim);
    matrix(p + "attn_v.weight", kv_dim, shape.dim);
    matrix(p + "attn_output.weight", shape.dim, shape.dim);
    norm(p + "ffn_norm.weight");
    matrix(p + "ffn_gate.weight", shape.ffn_dim, shape.dim);
    matrix(p + "ffn_up.weight", shape.ffn_dim, shape.dim);
    matrix(p + "ffn_down.weight", shape.dim, shape.ffn_dim);
  }
  norm("output_norm.weight");
  matrix("output.weight", shape.n_vocab, shape.dim);

  TROUPE_TRY(w.write(options.output));
  std::error_code ec;
  const auto size = std::filesystem::file_size(options.output, ec);
  return make_model_result{options.output, shape, params, ec ? 0 : static_cast<uint64_t>(size)};
}

}  // namespace troupe
