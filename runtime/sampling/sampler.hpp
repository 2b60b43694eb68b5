#pragma once
// Token sampling for one sequence, with OpenAI/vLLM semantics.
//
// Order of operations (as vLLM): log-probabilities of the raw logits → penalties → temperature
// (0 = greedy) → top-k → top-p → min-p → a draw from the RNG. Returned log-probabilities are those
// of the raw model distribution, before penalties and temperature, which is vLLM's default
// (logprobs_mode "raw_logprobs") and what OpenAI clients expect: they describe the model, not the
// sampling settings.
//
// Reproducibility: the RNG (rng.hpp) and the order in which candidates are walked are fully
// specified, so a seed gives the same tokens across standard libraries and platforms, given the
// same logits and the same float exp() results.

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/sampling/rng.hpp"

namespace troupe {

/// Per-request sampling settings, OpenAI/vLLM semantics; defaults = no-op values.
struct sampling_params {
  float temperature = 1.0f;         ///< 0 = greedy (argmax, ties -> lowest id)
  int32_t top_k = 0;                ///< 0 or < 0 = off
  float top_p = 1.0f;               ///< 1 = off; keeps the smallest set with cumulative p >= top_p
  float min_p = 0.0f;               ///< 0 = off; keeps tokens with p >= min_p * p_max
  /// > 1 penalises tokens seen in prompt + output: positive logits divided, negative multiplied.
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;    ///< logit -= presence * (count > 0), over generated tokens
  float frequency_penalty = 0.0f;   ///< logit -= frequency * count, over generated tokens
  std::optional<uint64_t> seed;     ///< set: reproducible stream; unset: a random seed
  int32_t logprobs = 0;             ///< how many top log-probabilities to return (0 = none)
  /// Compute the chosen token's log-probability (sample_result::logprob). It costs a pass of exp
  /// over the vocabulary per token, so it is off unless asked for (it is on whenever logprobs > 0).
  bool chosen_logprob = false;
  std::vector<int32_t> stop_token_ids;  ///< sampling one of these sets sample_result::is_stop

  /// invalid_argument naming the first bad field (temperature < 0, top_p not in (0, 1], ...).
  status validate() const;
  /// Whether any penalty is active (then the sampler keeps token counts).
  bool has_penalties() const noexcept {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

/// One token and its log-probability.
struct token_logprob {
  int32_t id;
  float logprob;
};

/// What one sampling step produced.
struct sample_result {
  int32_t token = -1;               ///< the chosen token id
  float logprob = 0.0f;             ///< its log-probability under the raw model distribution (0 unless asked for)
  std::vector<token_logprob> top;   ///< the params.logprobs most likely tokens, most likely first
  bool is_stop = false;             ///< token is one of params.stop_token_ids
};

/// Per-sequence sampler: owns the RNG and the token counts for penalties.
class sampler {
 public:
  /// params should have passed validate(); prompt_ids feed the repetition penalty.
  explicit sampler(sampling_params params, std::span<const int32_t> prompt_ids = {});

  /// Samples from one row of logits (n_vocab floats; the caller's buffer may be modified: on
  /// return it holds the penalised logits, NaN replaced by -inf) and records the chosen token for
  /// penalties. An empty row gives token -1.
  sample_result sample(std::span<float> logits);

  /// Records a token appended to the sequence without sampling it (e.g. forced), for penalties.
  void accept(int32_t token);

  const sampling_params& params() const noexcept { return params_; }

 private:
  /// Applies the penalties in place; remembers the raw value of every logit it changed.
  void apply_penalties(std::span<float> logits);
  /// Raw (pre-penalty) logit of id, from the saved values or the row itself.
  float raw_logit(std::span<const float> logits, int32_t id) const;
  /// Draws a token from the penalised logits at temperature > 0 with the top-k/p, min-p filters.
  int32_t sample_random(std::span<const float> logits);
  /// The no-filter case (temperature and min-p only): a draw walking the ids in order.
  int32_t draw_in_id_order(std::span<const float> logits, float max, float inv_t);

  sampling_params params_;
  xoshiro256ss rng_;
  std::unordered_set<int32_t> seen_;                  ///< prompt + output, for repetition_penalty
  std::unordered_map<int32_t, int32_t> out_counts_;   ///< output only, for presence/frequency
  std::vector<std::pair<int32_t, float>> raw_saved_;  ///< (id, raw logit) changed by penalties
};

}  // namespace troupe
