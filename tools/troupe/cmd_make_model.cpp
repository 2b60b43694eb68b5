// troupe make-model: a random-weight GGUF of a realistic shape with a real tokenizer, for speed work.
#include <cstdio>
#include <memory>
#include <string>

#include "runtime/model/make_model.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

struct make_model_args {
  make_model_options opts;
  std::string dtype_name = "f16";
  std::string out, tokenizer_from;
};

int run_make_model(make_model_args& a) {
  const auto t = parse_dtype(a.dtype_name);
  if (!t) {
    std::fprintf(stderr, "troupe make-model: unknown --dtype '%s' (f32, f16, bf16, q8_0, q4_0)\n", a.dtype_name.c_str());
    return 1;
  }
  a.opts.type = *t;
  a.opts.output = a.out;
  a.opts.tokenizer_from = a.tokenizer_from;
  auto r = make_random_model(a.opts);
  if (!r) {
    std::fprintf(stderr, "troupe make-model: %s\n", r.error().what().c_str());
    return 1;
  }
  std::printf("wrote %s: shape %s, %s, %lld parameters, %.1f MiB\n", r->path.c_str(), r->shape.name.c_str(),
              a.dtype_name.c_str(), static_cast<long long>(r->parameter_count),
              static_cast<double>(r->file_bytes) / (1 << 20));
  return 0;
}

}  // namespace

void add_make_model(CLI::App& app) {
  auto args = std::make_shared<make_model_args>();
  CLI::App* cmd = app.add_subcommand("make-model", "write a random-weight GGUF of a realistic shape (for benchmarks)");
  std::string shapes;
  for (const auto& s : known_model_shapes()) shapes += (shapes.empty() ? "" : ", ") + s.name;
  cmd->add_option("--shape", args->opts.shape, "model shape: " + shapes)->required();
  cmd->add_option("--dtype", args->dtype_name, "matrix type: f32, f16, bf16, q8_0, q4_0")->capture_default_str();
  cmd->add_option("--out,-o", args->out, "output .gguf file")->required();
  cmd->add_option("--seed", args->opts.seed, "random seed")->capture_default_str();
  cmd->add_option("--tokenizer-from", args->tokenizer_from, "GGUF model whose tokenizer is copied (its vocabulary size is used)");
  cmd->callback([args] { exit_code() = run_make_model(*args); });
}

}  // namespace troupe::cli
