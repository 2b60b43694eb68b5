#pragma once
// The requests of a load test: synthetic prompts of given token lengths (random, shared-prefix,
// multi-turn) or prompts from a dataset file in ShareGPT's shape, all drawn from a seed. Lengths are
// counted with the served model's tokenizer, loaded locally.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/sampling/rng.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe::loadgen {

enum class dataset_kind {
  random,         ///< random token ids decoded to text, as vLLM's random dataset
  shared_prefix,  ///< num_prefixes groups, each prompt a group's prefix plus its own suffix
  multi_turn,     ///< conversations; each turn sent after the previous reply, which it appends
  file,           ///< JSON array or JSONL of ShareGPT conversations or {"prompt": ...} objects
};

/// What to generate. Lengths are in tokens; a length L with range ratio r is drawn uniformly from
/// [floor(L (1 - r)), floor(L (1 + r))] per request (vLLM's --random-range-ratio).
struct workload_options {
  dataset_kind kind = dataset_kind::random;
  std::filesystem::path path;          ///< the file of dataset_kind::file
  size_t num_prompts = 1000;           ///< requests in all (multi-turn: turns of all conversations)
  int32_t input_len = 1024;            ///< random and multi-turn user messages
  std::optional<int32_t> output_len;   ///< max_tokens; default 128, or a file's completion length
  double range_ratio = 0.0;
  int32_t prefix_len = 256;            ///< shared-prefix: tokens of each group's prefix
  int32_t suffix_len = 256;            ///< shared-prefix: tokens of each prompt's own part
  int32_t num_prefixes = 10;           ///< shared-prefix: groups
  int32_t turns = 3;                   ///< multi-turn: turns per conversation
  uint64_t seed = 0;
  // Dataset-file filters (vLLM's ShareGPT defaults): drop prompts or completions under min_len
  // tokens (completions only when output_len is not given), prompts over max_prompt_len and pairs
  // over max_total_len.
  int32_t min_len = 4, max_prompt_len = 1024, max_total_len = 2048;
};

/// One request of the workload.
struct workload_item {
  std::string prompt;          ///< the text sent (multi-turn: this turn's user message)
  int64_t prompt_len = 0;      ///< its length by the local tokenizer
  int32_t output_len = 0;      ///< max_tokens
  int64_t conversation = -1;   ///< multi-turn: which conversation (-1 otherwise)
  int32_t turn = 0;            ///< multi-turn: which turn of it
  int64_t after = -1;          ///< the item whose reply must arrive before this is sent (-1: none)
};

/// Text of random token ids (no special tokens, none that is not whole UTF-8 on its own), decoded
/// and re-encoded until the tokenizer counts the length asked for (a few rounds; the count reached
/// is returned with the text).
class random_text {
 public:
  /// The generator for tok (which must outlive it); an error if tok has no plain-text tokens.
  static expected<random_text> create(const tokenizer& tok);
  /// Text of n_tokens tokens, and the count the tokenizer gives it.
  std::pair<std::string, int64_t> make(xoshiro256ss& rng, int32_t n_tokens) const;

 private:
  random_text() = default;
  const tokenizer* tok_ = nullptr;
  std::vector<int32_t> pool_;  ///< the ids random text is drawn from
};

/// The items of a workload, in the order their arrival times are assigned. Multi-turn items are
/// interleaved by turn (all first turns, then all second turns, ...) so conversations run side by
/// side.
expected<std::vector<workload_item>> build_workload(const workload_options& opts, const tokenizer& tok);

/// The tokenizer of a model or tokenizer path: a .gguf file, a Hugging Face directory, a
/// tokenizer.json / tokenizer.model / llama2.c tokenizer.bin, or a llama2.c checkpoint.
expected<std::unique_ptr<tokenizer>> load_bench_tokenizer(const std::filesystem::path& path);

}  // namespace troupe::loadgen
