// The flags shared by the commands that load one model into an engine (generate, bench-engine).
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

void add_engine_options(CLI::App& cmd, engine_options& e) {
  cmd.add_option("--model,-m", e.model_path, "model: .gguf file, Hugging Face directory, llama2.c .bin, or hf:REPO/FILE (pulled into the cache)")
      ->required();
  cmd.add_option("--threads,-t", e.model.threads, "CPU threads (default: all cores)");
  cmd.add_option("--device", e.device, "where the model runs: cpu, or cuda:N for a GPU")->capture_default_str();
  cmd.add_flag("!--no-repack", e.model.repack, "CPU: read the weights from the mapped file as stored, instead of copies in huge pages (and Q8_0/Q4_0 repacked for the fast kernel)");
  cmd.add_option("--tokenizer", e.tokenizer_path, "tokenizer file when the model has none inside (tokenizer.bin, tokenizer.json, tokenizer.model)");
}

}  // namespace troupe::cli
