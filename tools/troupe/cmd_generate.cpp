// troupe generate: text from a prompt (or from BOS) to stdout as it is produced; logs to stderr.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "runtime/engine/engine.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

struct generate_args {
  engine_options engine;
  std::string prompt;
  int max_tokens = 256;
  float temperature = 0.8f;
  float top_p = 0.95f;
  int top_k = 40;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int64_t seed = -1;
  size_t kv_mb = 0;
};

int run_generate(generate_args a) {
  a.engine.pull_progress = isatty(STDERR_FILENO);
  auto eng = engine::load(a.engine);
  if (!eng) {
    std::fprintf(stderr, "troupe generate: %s\n", eng.error().what().c_str());
    return 1;
  }
  engine& e = **eng;
  const tokenizer& tok = e.tok();
  std::vector<int32_t> prompt = tok.encode_prompt(a.prompt);
  if (prompt.empty() && tok.bos_id() >= 0) prompt.push_back(tok.bos_id());
  if (prompt.empty()) {
    std::fprintf(stderr, "troupe generate: the prompt is empty and the model has no BOS token to start from\n");
    return 1;
  }
  sampling_params sp;
  sp.temperature = a.temperature;
  sp.top_p = a.top_p;
  sp.top_k = a.top_k;
  sp.min_p = a.min_p;
  sp.repetition_penalty = a.repeat_penalty;
  if (a.seed >= 0) sp.seed = static_cast<uint64_t>(a.seed);
  // With no prompt text the output starts the document, so SentencePiece's dummy space is dropped.
  stream_decoder out(tok, a.prompt.empty());
  auto result = e.generate(prompt, sp, a.max_tokens, [&](const sample_result& s) {
    const std::string text = out.push(s.token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  const std::string rest = out.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!result) {
    std::fprintf(stderr, "troupe generate: %s\n", result.error().what().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

void add_generate(CLI::App& app) {
  auto args = std::make_shared<generate_args>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text with a model (text to stdout, logs to stderr)");
  add_engine_options(*cmd, args->engine);
  cmd->add_option("--prompt,-p", args->prompt, "prompt text (default: start from BOS)");
  cmd->add_option("--max-tokens,-n", args->max_tokens, "tokens to generate at most")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temperature", args->temperature, "sampling temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", args->top_p, "nucleus sampling threshold (1 = off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", args->top_k, "keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--min-p", args->min_p, "drop tokens under min-p x the top probability (0 = off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", args->repeat_penalty, "repetition penalty (1 = off)")->capture_default_str();
  cmd->add_option("--seed,-s", args->seed, "random seed (default: random)");
  cmd->add_option("--kv-blocks", args->engine.kv.n_blocks, "KV cache size in blocks (default: from --kv-mb)");
  cmd->add_option("--kv-mb", args->kv_mb, "KV cache budget in MiB (default: one full context, at most 256)");
  cmd->callback([args] {
    if (args->kv_mb) args->engine.kv.max_bytes = args->kv_mb << 20;
    exit_code() = run_generate(*args);
  });
}

}  // namespace troupe::cli
