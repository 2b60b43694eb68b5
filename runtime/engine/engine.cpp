#include "runtime/engine/engine.hpp"

#include <algorithm>

#include "runtime/core/log.hpp"
#include "runtime/hub/pull.hpp"

namespace troupe {

const char* to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::length: return "length";
    case stop_reason::stop: return "stop";
    case stop_reason::context: return "context";
    case stop_reason::cancelled: return "cancelled";
  }
  return "unknown";
}

expected<std::shared_ptr<const tokenizer>> load_model_tokenizer(const model_weights& weights,
                                                                const std::string& tokenizer_path) {
  auto tok = tokenizer_path.empty() ? load_tokenizer(weights)
                                    : load_tokenizer(tokenizer_path, static_cast<int32_t>(weights.hp.n_vocab));
  TROUPE_TRY(tok);
  if ((*tok)->n_vocab() > weights.hp.n_vocab)
    return make_error(errc::shape_mismatch, "tokenizer has " + std::to_string((*tok)->n_vocab()) +
                                                " tokens but the model only " + std::to_string(weights.hp.n_vocab));
  return std::shared_ptr<const tokenizer>(std::move(*tok));
}

expected<std::unique_ptr<engine>> engine::load(const engine_options& opts) {
  std::unique_ptr<engine> e(new engine());
  e->opts_ = opts;
  // The device first: a wrong or missing one is reported before any weights are read.
  auto device = parse_device(opts.device);
  TROUPE_TRY(device);
  TROUPE_TRY(check_device(*device));
  auto path = resolve_model_path(opts.model_path, pull_options{{}, {}, opts.pull_progress});  // hf: -> the cached file
  TROUPE_TRY(path);
  e->opts_.model_path = *path;
  auto weights = load_model_weights(*path);
  TROUPE_TRY(weights);
  auto tok = load_model_tokenizer(*weights, opts.tokenizer_path);
  TROUPE_TRY(tok);
  e->tok_ = std::move(*tok);
  const model_hparams hp = weights->hp;
  // A shard of a parallel replica sizes its pool by its own layers and kv heads (the runner checks
  // the layout against the weights' block sizes too).
  const parallel_layout& layout = opts.model.parallel.layout;
  TROUPE_TRY(layout.validate(hp, 1));
  const shard_shape shard = layout.shape(hp);
  kv_pool_config kvc = opts.kv;
  if (kvc.n_blocks <= 0) {  // no more than kv_full_contexts whole contexts: small models stay small
    const size_t per_block = kv_pool::bytes_per_block(shard.n_layers, shard.n_kv_heads, hp.head_dim, kvc.block_size);
    const int64_t ctx_blocks = (hp.context_length + kvc.block_size - 1) / kvc.block_size;
    kvc.n_blocks = std::min<int64_t>(static_cast<int64_t>(kvc.max_bytes / per_block),
                                     ctx_blocks * std::max<int64_t>(1, opts.kv_full_contexts));
    if (kvc.n_blocks <= 0) kvc.n_blocks = 0;  // let the runner report the budget problem
  }
  auto runner = create_model_runner(std::move(*weights), runner_options{*device, opts.model, kvc});
  TROUPE_TRY(runner);
  e->runner_ = std::move(*runner);
  const model_runner& r = *e->runner_;
  e->blocks_ = std::make_unique<block_allocator>(r.n_blocks());
  spdlog::info("engine: {} ({} layers, dim {}){} on {}{}, KV {} blocks x {} tokens ({:.1f} MiB)", e->opts_.model_path,
               hp.n_layers, hp.dim, layout.single() ? std::string() : " as the shard " + layout.to_string(), r.device_name(),
               r.threads() > 0 ? " with " + std::to_string(r.threads()) + " threads" : std::string(), r.n_blocks(),
               r.block_size(), static_cast<double>(r.kv_bytes()) / (1 << 20));
  return e;
}

status engine::prefill(std::span<const int32_t> prompt, block_table& table, std::vector<float>& logits) {
  const int64_t n_vocab = hparams().n_vocab;
  logits.resize(static_cast<size_t>(n_vocab));
  const int64_t chunk = std::max<int64_t>(1, opts_.prefill_chunk);
  for (int64_t start = 0; start < static_cast<int64_t>(prompt.size()); start += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(prompt.size()) - start);
    if (!table.reserve(*blocks_, start + n, block_size()))
      return make_error(errc::no_kv_blocks, "prefill: the KV cache has no room for " + std::to_string(start + n) + " positions");
    forward_batch batch;
    batch.seqs.push_back(seq_step{prompt.subspan(static_cast<size_t>(start), static_cast<size_t>(n)), start,
                                  table.blocks, start + n == static_cast<int64_t>(prompt.size())});
    TROUPE_TRY(forward(batch, logits));
  }
  return {};
}

expected<generation_result> engine::generate(std::span<const int32_t> prompt, const sampling_params& params,
                                             int max_tokens,
                                             const std::function<bool(const sample_result&)>& on_token) {
  TROUPE_TRY(params.validate());
  if (prompt.empty()) return make_error(errc::invalid_argument, "generate: the prompt has no tokens");
  const int64_t ctx = hparams().context_length;
  if (static_cast<int64_t>(prompt.size()) >= ctx)
    return make_error(errc::context_overflow, "generate: the prompt has " + std::to_string(prompt.size()) +
                                                  " tokens; the context length is " + std::to_string(ctx));
  block_table table;
  std::vector<float> logits;
  generation_result result;
  sampler smp(params, prompt);
  auto finish = [&](stop_reason r) {
    table.release(*blocks_);
    result.reason = r;
    return result;
  };
  if (auto st = prefill(prompt, table, logits); !st) {
    table.release(*blocks_);
    return unexpected{st.error()};
  }
  int64_t pos = static_cast<int64_t>(prompt.size());
  const auto& stops = tok_->stop_ids();
  for (int n = 0; n < max_tokens; ++n) {
    sample_result s = smp.sample(logits);
    const bool is_stop = s.is_stop || std::find(stops.begin(), stops.end(), s.token) != stops.end();
    if (is_stop) return finish(stop_reason::stop);
    result.tokens.push_back(s.token);
    if (on_token && !on_token(s)) return finish(stop_reason::cancelled);
    if (n + 1 == max_tokens) break;
    if (pos + 1 > ctx) return finish(stop_reason::context);
    if (!table.reserve(*blocks_, pos + 1, block_size())) {
      table.release(*blocks_);
      return make_error(errc::no_kv_blocks, "generate: the KV cache is full");
    }
    const int32_t tok = s.token;
    forward_batch batch;
    batch.seqs.push_back(seq_step{std::span<const int32_t>(&tok, 1), pos, table.blocks, true});
    if (auto st = forward(batch, logits); !st) {
      table.release(*blocks_);
      return unexpected{st.error()};
    }
    ++pos;
  }
  return finish(stop_reason::length);
}

}  // namespace troupe
