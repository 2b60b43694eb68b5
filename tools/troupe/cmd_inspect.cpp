// troupe inspect: architecture, shapes, parameter count, tensor types and tokenizer of a model.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "runtime/model/weights.hpp"
#include "runtime/tokenizer/chat_template.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

struct inspect_args {
  std::string model, tokenizer;
  bool json = false;
};

int run_inspect(const inspect_args& a) {
  auto w = load_model_weights(a.model);
  if (!w) {
    std::fprintf(stderr, "troupe inspect: %s\n", w.error().what().c_str());
    return 1;
  }
  const model_hparams& hp = w->hp;
  std::map<std::string, int64_t> types;
  for (const auto& [name, t] : w->tensors) types[std::string(to_string(t.type))] += 1;
  nlohmann::ordered_json j;
  j["path"] = a.model;
  j["format"] = w->format;
  j["architecture"] = hp.architecture;
  j["parameters"] = w->parameter_count();
  j["bytes"] = w->total_bytes();
  j["vocab_size"] = hp.n_vocab;
  j["dim"] = hp.dim;
  j["ffn_dim"] = hp.ffn_dim;
  j["layers"] = hp.n_layers;
  j["heads"] = hp.n_heads;
  j["kv_heads"] = hp.n_kv_heads;
  j["head_dim"] = hp.head_dim;
  j["context_length"] = hp.context_length;
  j["norm_eps"] = hp.norm_eps;
  j["rope_theta"] = hp.rope_theta;
  j["rope_style"] = hp.rope == cpu::rope_style::neox ? "neox (rotate-half)" : "interleaved";
  j["rope_scaling"] = hp.scaling.llama3 ? "llama3" : "none";
  j["tied_embeddings"] = hp.tied_embeddings;
  j["qkv_bias"] = hp.qkv_bias;
  j["tensor_count"] = w->tensors.size();
  j["tensor_types"] = types;
  auto tok = a.tokenizer.empty() ? load_tokenizer(*w) : load_tokenizer(a.tokenizer, static_cast<int32_t>(hp.n_vocab));
  if (tok) {
    const tokenizer& t = **tok;
    const chat_format fmt = detect_chat_format(t.chat_template(), [&](std::string_view s) {
      const auto ids = t.encode(s, true);
      return ids.size() == 1 && t.is_special(ids[0]);
    });
    j["tokenizer"] = {{"kind", t.kind()}, {"vocab_size", t.n_vocab()}, {"bos_id", t.bos_id()},
                      {"eos_id", t.eos_id()}, {"add_bos", t.add_bos()}, {"chat_format", to_string(fmt)}};
  } else {
    j["tokenizer"] = {{"error", tok.error().what()}};
  }
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string v = it->is_string() ? it->get<std::string>() : it->dump();
    std::printf("%-16s %s\n", it.key().c_str(), v.c_str());
  }
  return 0;
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto args = std::make_shared<inspect_args>();
  CLI::App* cmd = app.add_subcommand("inspect", "print a model's architecture, shapes, parameter count, tensor types and tokenizer");
  cmd->add_option("--model,-m", args->model, "model: .gguf file, Hugging Face directory or llama2.c .bin")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer file when the model has none inside");
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { exit_code() = run_inspect(*args); });
}

}  // namespace troupe::cli
