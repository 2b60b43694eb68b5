#include "runtime/loadgen/workload.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/core/log.hpp"
#include "runtime/model/weights.hpp"
#include "runtime/tokenizer/unicode.hpp"

namespace troupe::loadgen {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int32_t default_output_len = 128;  // vLLM's random dataset default

/// Uniform integer in [lo, hi] (the modulo bias is far below anything a load test can see).
int64_t uniform_int(xoshiro256ss& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng.next() % static_cast<uint64_t>(hi - lo + 1));
}

/// A length drawn from [floor(len (1 - r)), floor(len (1 + r))], at least min_len.
int32_t ranged_len(xoshiro256ss& rng, int32_t len, double ratio, int32_t min_len) {
  const auto lo = static_cast<int64_t>(std::floor(len * (1.0 - ratio)));
  const auto hi = static_cast<int64_t>(std::floor(len * (1.0 + ratio)));
  return static_cast<int32_t>(std::max<int64_t>(min_len, uniform_int(rng, lo, std::max(lo, hi))));
}

/// Fisher-Yates with the workload's generator (std::shuffle's use of the engine is unspecified).
template <class T>
void shuffle(std::vector<T>& v, xoshiro256ss& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(uniform_int(rng, 0, static_cast<int64_t>(i) - 1))]);
}

struct text_pair {
  std::string prompt;
  std::optional<std::string> completion;
};

/// The first human turn and the reply to it (ShareGPT: {"conversations": [{"from": "human",
/// "value": ...}, {"from": "gpt", "value": ...}]}), or {"prompt": ..., "completion": ...}.
std::optional<text_pair> entry_text(const json& e) {
  if (!e.is_object()) return std::nullopt;
  auto text_of = [](const json& turn) -> std::optional<std::string> {
    if (!turn.is_object()) return std::nullopt;
    for (const char* key : {"value", "content"})
      if (auto it = turn.find(key); it != turn.end() && it->is_string()) return it->get<std::string>();
    return std::nullopt;
  };
  if (auto conv = e.find("conversations"); conv != e.end()) {
    if (!conv->is_array() || conv->size() < 2) return std::nullopt;
    auto prompt = text_of((*conv)[0]), reply = text_of((*conv)[1]);
    if (!prompt || !reply) return std::nullopt;
    return text_pair{std::move(*prompt), std::move(*reply)};
  }
  if (auto p = e.find("prompt"); p != e.end() && p->is_string()) {
    text_pair t{p->get<std::string>(), std::nullopt};
    if (auto c = e.find("completion"); c != e.end() && c->is_string()) t.completion = c->get<std::string>();
    return t;
  }
  return std::nullopt;
}

/// The usable entries of a JSON array (or object) file, or of a JSONL file.
expected<std::vector<text_pair>> read_dataset_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(errc::io_error, "cannot read dataset '" + path.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string body = ss.str();
  std::vector<json> entries;
  if (json whole = json::parse(body, nullptr, false); !whole.is_discarded()) {
    if (whole.is_array()) entries = whole.get<std::vector<json>>();
    else entries.push_back(std::move(whole));
  } else {
    std::istringstream lines(body);
    std::string line;
    for (int64_t n = 1; std::getline(lines, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json e = json::parse(line, nullptr, false);
      if (e.is_discarded())
        return make_error(errc::bad_format, path.string() + ":" + std::to_string(n) + ": neither a JSON document nor JSONL");
      entries.push_back(std::move(e));
    }
  }
  std::vector<text_pair> out;
  for (const auto& e : entries)
    if (auto t = entry_text(e)) out.push_back(std::move(*t));
  if (out.empty())
    return make_error(errc::bad_format, path.string() + ": no entry has ShareGPT 'conversations' (two turns or more) or a 'prompt'");
  if (out.size() < entries.size())
    spdlog::warn("bench: {} of {} entries of {} have neither two conversation turns nor a prompt; skipped", entries.size() - out.size(),
                 entries.size(), path.string());
  return out;
}

expected<std::vector<workload_item>> from_file(const workload_options& o, const tokenizer& tok, xoshiro256ss& rng) {
  auto pairs = read_dataset_file(o.path);
  TROUPE_TRY(pairs);
  shuffle(*pairs, rng);
  std::vector<workload_item> valid;
  for (const auto& p : *pairs) {
    if (valid.size() == o.num_prompts) break;
    const auto prompt_len = static_cast<int64_t>(tok.encode(p.prompt).size());
    int64_t output_len = default_output_len;
    bool check_output = false;
    if (o.output_len) output_len = *o.output_len;
    else if (p.completion) output_len = static_cast<int64_t>(tok.encode(*p.completion).size()), check_output = true;
    if (prompt_len < o.min_len || (check_output && output_len < o.min_len) || prompt_len > o.max_prompt_len ||
        prompt_len + output_len > o.max_total_len)
      continue;
    workload_item it;
    it.prompt = p.prompt;
    it.prompt_len = prompt_len;
    it.output_len = static_cast<int32_t>(output_len);
    valid.push_back(std::move(it));
  }
  if (valid.empty())
    return make_error(errc::invalid_argument, o.path.string() + ": no entry passes the filters (prompt and completion >= " +
                                                  std::to_string(o.min_len) + " tokens, prompt <= " + std::to_string(o.max_prompt_len) +
                                                  ", both <= " + std::to_string(o.max_total_len) + ")");
  // Fewer usable entries than requests: repeat them in the same shuffled order (vLLM oversamples).
  if (valid.size() < o.num_prompts)
    spdlog::warn("bench: {} has {} usable entries for {} requests; repeating them", o.path.string(), valid.size(), o.num_prompts);
  std::vector<workload_item> items;
  for (size_t i = 0; i < o.num_prompts; ++i) items.push_back(valid[i % valid.size()]);
  return items;
}

}  // namespace

expected<random_text> random_text::create(const tokenizer& tok) {
  random_text r;
  r.tok_ = &tok;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    if (tok.is_special(id)) continue;
    const std::string bytes = tok.token_bytes(id);
    // Whole UTF-8 on its own (no stray bytes of a split character) and no control characters
    // other than newline and tab: the prompts stay plain text that survives JSON.
    const bool plain = std::none_of(bytes.begin(), bytes.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t';
    });
    if (!bytes.empty() && plain && unicode::sanitize_utf8(bytes) == bytes) r.pool_.push_back(id);
  }
  if (r.pool_.empty()) return make_error(errc::invalid_argument, "the tokenizer has no plain-text tokens to draw random prompts from");
  return r;
}

std::pair<std::string, int64_t> random_text::make(xoshiro256ss& rng, int32_t n_tokens) const {
  const auto n = static_cast<size_t>(std::max(0, n_tokens));
  auto draw = [&] { return pool_[static_cast<size_t>(uniform_int(rng, 0, static_cast<int64_t>(pool_.size()) - 1))]; };
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = draw();
  std::string text;
  int64_t count = 0;
  // Decoding then encoding merges or splits some tokens; re-draw from the re-encoded ids until the
  // count matches (vLLM adjusts its random prompts the same way).
  for (int round = 0; round < 10; ++round) {
    text = tok_->decode(ids);
    std::vector<int32_t> again = tok_->encode(text);
    count = static_cast<int64_t>(again.size());
    if (again.size() == n) break;
    if (again.size() > n) again.resize(n);
    while (again.size() < n) again.push_back(draw());
    ids = std::move(again);
  }
  return {std::move(text), count};
}

expected<std::vector<workload_item>> build_workload(const workload_options& o, const tokenizer& tok) {
  if (o.num_prompts == 0) return make_error(errc::invalid_argument, "--num-prompts must be > 0");
  if (!(o.range_ratio >= 0.0 && o.range_ratio < 1.0)) return make_error(errc::invalid_argument, "--range-ratio must be in [0, 1)");
  xoshiro256ss rng(o.seed);
  if (o.kind == dataset_kind::file) return from_file(o, tok, rng);

  auto text = random_text::create(tok);
  TROUPE_TRY(text);
  const int32_t out_len = o.output_len.value_or(default_output_len);
  if (o.input_len < 1 || out_len < 1) return make_error(errc::invalid_argument, "--input-len and --output-len must be >= 1");
  std::vector<workload_item> items;
  switch (o.kind) {
    case dataset_kind::random:
      for (size_t i = 0; i < o.num_prompts; ++i) {
        workload_item it;
        std::tie(it.prompt, it.prompt_len) = text->make(rng, ranged_len(rng, o.input_len, o.range_ratio, 1));
        it.output_len = ranged_len(rng, out_len, o.range_ratio, 1);
        items.push_back(std::move(it));
      }
      break;
    case dataset_kind::shared_prefix: {
      if (o.num_prefixes < 1 || o.prefix_len < 1 || o.suffix_len < 0)
        return make_error(errc::invalid_argument, "shared-prefix needs --num-prefixes >= 1, --prefix-len >= 1 and --suffix-len >= 0");
      std::vector<std::string> prefixes;
      for (int32_t g = 0; g < o.num_prefixes; ++g) prefixes.push_back(text->make(rng, o.prefix_len).first);
      for (size_t i = 0; i < o.num_prompts; ++i) {
        workload_item it;
        // A space between the parts keeps the prefix's tokens a prefix of the prompt's tokens.
        const auto suffix = text->make(rng, ranged_len(rng, o.suffix_len, o.range_ratio, 0)).first;
        it.prompt = prefixes[i % prefixes.size()] + " " + suffix;
        it.prompt_len = static_cast<int64_t>(tok.encode(it.prompt).size());
        it.output_len = ranged_len(rng, out_len, o.range_ratio, 1);
        items.push_back(std::move(it));
      }
      shuffle(items, rng);  // the groups arrive mixed, not in turn
      break;
    }
    case dataset_kind::multi_turn: {
      if (o.turns < 1) return make_error(errc::invalid_argument, "--turns must be >= 1");
      const auto turns = static_cast<size_t>(o.turns);
      const size_t conversations = (o.num_prompts + turns - 1) / turns;
      // Conversation c has turns turns, except the last, which gets what is left of num_prompts.
      std::vector<int64_t> last_index(conversations, -1);
      for (size_t t = 0; t < turns; ++t) {
        for (size_t c = 0; c < conversations; ++c) {
          if (c * turns + t >= o.num_prompts) continue;
          workload_item it;
          std::tie(it.prompt, it.prompt_len) = text->make(rng, ranged_len(rng, o.input_len, o.range_ratio, 1));
          it.output_len = ranged_len(rng, out_len, o.range_ratio, 1);
          it.conversation = static_cast<int64_t>(c);
          it.turn = static_cast<int32_t>(t);
          it.after = last_index[c];
          last_index[c] = static_cast<int64_t>(items.size());
          items.push_back(std::move(it));
        }
      }
      break;
    }
    case dataset_kind::file:
      break;  // handled above
  }
  return items;
}

expected<std::unique_ptr<tokenizer>> load_bench_tokenizer(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return make_error(errc::not_found, "tokenizer or model path '" + path.string() + "' does not exist");
  const std::string ext = path.extension().string();
  if (fs::is_directory(path, ec) || ext == ".gguf" || ext == ".json" || ext == ".model") return load_tokenizer(path);
  // A llama2.c checkpoint knows its vocabulary size and where its tokenizer.bin is; anything that
  // does not load as a model is tried as a bare tokenizer file (tok512.bin).
  if (auto w = load_model_weights(path)) return load_tokenizer(*w);
  return load_tokenizer(path);
}

}  // namespace troupe::loadgen
