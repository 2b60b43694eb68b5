#include "runtime/serving/shard_runner.hpp"

#include <exception>
#include <span>
#include <string>
#include <unordered_set>

namespace troupe {

namespace {

std::string seq_name(const seq_plan& s) { return "sequence " + std::to_string(s.id); }

}  // namespace

expected<std::unique_ptr<shard_runner>> shard_runner::load(const engine_options& opts) {
  auto e = engine::load(opts);
  TROUPE_TRY(e);
  return std::make_unique<shard_runner>(std::move(*e));
}

shard_runner::shard_runner(std::unique_ptr<engine> e) : engine_(std::move(e)) {
  const model_hparams& hp = engine_->hparams();
  info_.n_vocab = static_cast<int32_t>(hp.n_vocab);
  info_.n_layers = static_cast<int32_t>(hp.n_layers);
  info_.context_length = hp.context_length;
  info_.n_blocks = engine_->n_blocks();
  info_.block_size = engine_->block_size();
  info_.samples = engine_->options().model.parallel.layout.samples();
}

status shard_runner::validate(const step_plan& plan) const {
  auto bad = [](std::string msg) { return make_error(errc::invalid_argument, "step: " + std::move(msg)); };
  for (const block_copy& c : plan.copies)
    if (c.src < 0 || c.src >= info_.n_blocks || c.dst < 0 || c.dst >= info_.n_blocks)
      return bad("block copy " + std::to_string(c.src) + " -> " + std::to_string(c.dst) + " is outside the " +
                 std::to_string(info_.n_blocks) + " blocks");
  std::unordered_set<request_id> in_plan;
  for (const seq_plan& s : plan.seqs) {
    if (!in_plan.insert(s.id).second) return bad(seq_name(s) + " appears twice in the plan");
    const bool live = samplers_.count(s.id) != 0;
    if (s.new_sequence) {
      if (live) return bad(seq_name(s) + " is new but already running on this shard");
      if (auto st = s.params.validate(); !st) return bad(seq_name(s) + ": " + st.error().message());
      for (int32_t t : s.prompt)
        if (t < 0 || t >= info_.n_vocab)
          return bad(seq_name(s) + ": prompt token id " + std::to_string(t) + " outside the vocabulary of " +
                     std::to_string(info_.n_vocab));
    } else if (!live) {
      return bad(seq_name(s) + " is not running on this shard (no new_sequence step came first)");
    }
    if (s.tokens.empty()) return bad(seq_name(s) + " has no tokens to run");
    const int64_t end = s.start_pos + static_cast<int64_t>(s.tokens.size());
    if (s.start_pos < 0 || end > info_.context_length)
      return make_error(errc::context_overflow, "step: " + seq_name(s) + " runs positions up to " +
                                                    std::to_string(end) + "; the context length is " +
                                                    std::to_string(info_.context_length));
    if (static_cast<int64_t>(s.block_table.size()) * info_.block_size < end)
      return bad(seq_name(s) + ": " + std::to_string(s.block_table.size()) + " blocks do not cover " +
                 std::to_string(end) + " positions");
    for (int32_t b : s.block_table)
      if (b < 0 || b >= info_.n_blocks)
        return bad(seq_name(s) + ": block id " + std::to_string(b) + " outside the " +
                   std::to_string(info_.n_blocks) + " blocks");
    for (int32_t t : s.tokens)
      if (t < 0 || t >= info_.n_vocab)
        return bad(seq_name(s) + ": token id " + std::to_string(t) + " outside the vocabulary of " +
                   std::to_string(info_.n_vocab));
  }
  return {};
}

step_result shard_runner::run(const step_plan& plan) {
  try {
    return run_checked(plan);
  } catch (const std::exception& e) {  // bad_alloc and the like: this step fails, the shard lives on
    step_result r;
    r.step = plan.step;
    r.error = std::string("internal: step failed: ") + e.what();
    return r;
  }
}

step_result shard_runner::run_checked(const step_plan& plan) {
  step_result result;
  result.step = plan.step;
  // Releases first: those sequences ended whatever becomes of this step, and a plan may restart
  // an id it releases (recompute after preemption).
  for (request_id id : plan.released) samplers_.erase(id);
  if (auto st = validate(plan); !st) {
    result.error = st.error().what();
    return result;
  }

  for (const block_copy& c : plan.copies)
    if (auto st = engine_->copy_block(c.src, c.dst); !st) {
      result.error = st.error().what();
      return result;
    }

  // New sequences join the shard only once the forward pass has succeeded.
  std::vector<std::pair<request_id, std::unique_ptr<sampler>>> fresh;
  forward_batch batch;
  batch.seqs.reserve(plan.seqs.size());
  for (const seq_plan& s : plan.seqs) {
    if (s.new_sequence) fresh.emplace_back(s.id, info_.samples ? std::make_unique<sampler>(s.params, s.prompt) : nullptr);
    batch.seqs.push_back(seq_step{s.tokens, s.start_pos, s.block_table, s.sample});
  }
  const size_t n_vocab = static_cast<size_t>(info_.n_vocab);
  logits_.resize(info_.samples ? static_cast<size_t>(batch.n_logits()) * n_vocab : 0);
  if (auto st = engine_->forward(batch, logits_); !st) {
    result.error = st.error().what();
    return result;
  }
  for (auto& [id, smp] : fresh) samplers_[id] = std::move(smp);
  if (!info_.samples) return result;

  size_t row = 0;
  for (const seq_plan& s : plan.seqs) {
    if (!s.sample) continue;
    std::span<float> logits(logits_.data() + row * n_vocab, n_vocab);
    ++row;
    result.outputs.push_back(seq_output{s.id, samplers_.at(s.id)->sample(logits)});
  }
  return result;
}

}  // namespace troupe
