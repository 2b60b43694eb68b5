#include "runtime/sampling/sampler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>

namespace troupe {

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// Below this temperature sampling is greedy, as in vLLM (_SAMPLING_EPS): the distribution is a
// spike anyway, and dividing by a tiny temperature only invites overflow.
constexpr float greedy_below = 1e-5f;

// The top-p path sorts this many candidates first, then doubles until the mass is reached:
// real distributions put top_p = 0.9 of their mass in a few dozen tokens.
constexpr size_t top_p_first_chunk = 64;
// Weight (p / p_max) below which top-p first tries to do without a token; see sample_random.
constexpr float top_p_prefilter = 1e-4f;
// Up to this k, top-k keeps a heap of the best so far (one pass, mostly cheap rejections);
// above it, nth_element over a copy of the row.
constexpr size_t top_k_heap_max = 256;
// Tokens per block in the id-order walk.
constexpr size_t walk_block = 256;

struct candidate {
  float logit;  // penalised, unscaled
  float e;      // exp((logit - max) / temperature): unnormalised probability, 1 for the max
  int32_t id;
};

// Total order: higher logit first, ties to the lower id. A total order makes the sorted prefix,
// and so the sampled token, independent of how the standard library's sort/nth_element work.
bool better(const candidate& a, const candidate& b) noexcept {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

bool better_lp(const token_logprob& a, const token_logprob& b) noexcept {
  return a.logprob > b.logprob || (a.logprob == b.logprob && a.id < b.id);
}

// Scratch shared by every sampler on a thread, so that a sampler per sequence costs no
// vocabulary-sized buffers and steady-state sampling does not allocate.
thread_local std::vector<candidate> tl_candidates;
thread_local std::vector<float> tl_weights;
thread_local std::vector<double> tl_block_sums;

// The whole-vocabulary loops below only vectorise once GCC may treat float compares and
// conversions as free of side effects (the default -ftrapping-math keeps them in branches).
// Nothing here reads the floating-point exception flags, so that is safe; scoped to these helpers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

// exp(x) for x <= 0 (NaN-free), to ~2 ulp: 2^n * p(r) with n = round(x / ln 2) and a degree-6
// Taylor polynomial on |r| <= ln2 / 2. Written out here rather than calling std::exp because
// (1) it is branch-free, so the whole-vocabulary loops vectorise (libm's expf is a call per
// element, several times slower), and (2) its result depends only on IEEE float arithmetic, not
// on the platform's libm, which keeps seeded sampling the same across platforms.
inline float exp_nonpos(float x) noexcept {
  constexpr float lowest = -87.0f;  // below this the result is under 2^-125: treat as 0
  const float xc = x < lowest ? lowest : x;
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_hi = 0.693145751953125f;   // exact in float
  constexpr float ln2_lo = 1.428606765330187e-06f;
  constexpr float round_magic = 12582912.0f;      // 1.5 * 2^23: adding it rounds to an integer
  const float n = (xc * log2e + round_magic) - round_magic;
  const float r = (xc - n * ln2_hi) - n * ln2_lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const auto bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;  // 2^n, n >= -126
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lowest ? 0.0f : p * scale;
}

// Lane counts for the whole-row loops: independent accumulators the compiler can keep in one
// vector register, since it may not reorder a single float reduction on its own.
constexpr size_t lanes = 8;

// Replaces NaN by -inf (a NaN logit is a bug upstream; masking it keeps it from being chosen or
// poisoning sums) and returns the row's maximum.
float sanitize_and_max(std::span<float> row) noexcept {
  float m[lanes];
  std::fill(m, m + lanes, neg_inf);
  int32_t nan_seen[lanes] = {};
  const size_t n = row.size(), body = n - n % lanes;
  const float* x = row.data();
  for (size_t i = 0; i < body; i += lanes) {
    for (size_t j = 0; j < lanes; ++j) {
      const float v = x[i + j];
      nan_seen[j] |= v != v;
      m[j] = m[j] < v ? v : m[j];  // a NaN never wins this compare
    }
  }
  float mx = neg_inf;
  bool any_nan = false;
  for (size_t i = body; i < n; ++i) {
    any_nan |= std::isnan(x[i]);
    mx = std::max(mx, x[i]);
  }
  for (size_t j = 0; j < lanes; ++j) {
    any_nan |= nan_seen[j] != 0;
    mx = std::max(mx, m[j]);
  }
  if (any_nan) {  // rare: only then write the row
    for (float& v : row) v = std::isnan(v) ? neg_inf : v;
  }
  return mx;
}

float row_max(std::span<const float> row) noexcept {
  float m[lanes];
  std::fill(m, m + lanes, neg_inf);
  const size_t n = row.size(), body = n - n % lanes;
  for (size_t i = 0; i < body; i += lanes) {
    for (size_t j = 0; j < lanes; ++j) m[j] = m[j] < row[i + j] ? row[i + j] : m[j];
  }
  float mx = neg_inf;
  for (size_t i = body; i < n; ++i) mx = std::max(mx, row[i]);
  for (float v : m) mx = std::max(mx, v);
  return mx;
}

// Float lanes over short blocks keep the rounding small; the blocks add up in double.
constexpr size_t sum_block = 512;

// sum_i exp((row[i] - max) * scale).
double sum_exp(std::span<const float> row, float max, float scale) noexcept {
  const size_t n = row.size(), body = n - n % sum_block;
  double sum = 0.0;
  for (size_t b = 0; b < body; b += sum_block) {
    float acc[lanes] = {};
    for (size_t i = b; i < b + sum_block; i += lanes) {
      for (size_t j = 0; j < lanes; ++j) acc[j] += exp_nonpos((row[i + j] - max) * scale);
    }
    for (float v : acc) sum += v;
  }
  for (size_t i = body; i < n; ++i) sum += exp_nonpos((row[i] - max) * scale);
  return sum;
}

double sum_lanes(std::span<const float> w) noexcept {
  const size_t n = w.size(), body = n - n % sum_block;
  double sum = 0.0;
  for (size_t b = 0; b < body; b += sum_block) {
    float acc[lanes] = {};
    for (size_t i = b; i < b + sum_block; i += lanes) {
      for (size_t j = 0; j < lanes; ++j) acc[j] += w[i + j];
    }
    for (float v : acc) sum += v;
  }
  for (size_t i = body; i < n; ++i) sum += w[i];
  return sum;
}

// out[i] = exp((row[i] - max) * scale), zeroed below min_weight.
void fill_weights(std::span<const float> row, float max, float scale, float min_weight,
                  float* out) noexcept {
  for (size_t i = 0; i < row.size(); ++i) {
    const float e = exp_nonpos((row[i] - max) * scale);
    out[i] = e >= min_weight ? e : 0.0f;
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

uint64_t random_seed() {
  std::random_device rd;
  const uint64_t hi = rd();
  const uint64_t lo = rd();
  const auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return (hi << 32) ^ lo ^ now;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

unexpected bad_field(const char* field, const char* rule, double got) {
  return make_error(errc::invalid_argument,
                    std::string("sampling_params.") + field + " must be " + rule + ", got " + fmt(got));
}

// The k best tokens of the row, sorted in `better` order (weights left at 0).
void select_top_k(std::span<const float> logits, size_t k, std::vector<candidate>& out) {
  const size_t n = logits.size();
  out.clear();
  if (k <= top_k_heap_max) {
    // Heap front = the worst of the best so far; most tokens lose against it at once.
    for (size_t i = 0; i < n; ++i) {
      const candidate c{logits[i], 0.0f, static_cast<int32_t>(i)};
      if (out.size() < k) {
        out.push_back(c);
        std::push_heap(out.begin(), out.end(), better);
      } else if (better(c, out.front())) {
        std::pop_heap(out.begin(), out.end(), better);
        out.back() = c;
        std::push_heap(out.begin(), out.end(), better);
      }
    }
    std::sort_heap(out.begin(), out.end(), better);
    return;
  }
  out.resize(n);
  for (size_t i = 0; i < n; ++i) out[i] = {logits[i], 0.0f, static_cast<int32_t>(i)};
  std::nth_element(out.begin(), out.begin() + static_cast<ptrdiff_t>(k), out.end(), better);
  out.resize(k);
  std::sort(out.begin(), out.end(), better);
}

// Length of the smallest `better`-ordered prefix whose weight reaches top_p of the total.
// cands[0, sorted) is already in order; the rest is sorted only as far as needed, in chunks of
// the best remaining candidates that double each time.
size_t top_p_prefix(std::vector<candidate>& cands, size_t sorted, float top_p) {
  double total = 0.0;
  for (const auto& c : cands) total += c.e;
  const double target = static_cast<double>(top_p) * total;
  double cum = 0.0;
  size_t chunk = top_p_first_chunk;
  size_t i = 0;
  for (;;) {
    if (i == sorted) {
      if (sorted == cands.size()) break;
      const size_t end = std::min(cands.size(), sorted + chunk);
      chunk *= 2;
      const auto first = cands.begin() + static_cast<ptrdiff_t>(sorted);
      const auto mid = cands.begin() + static_cast<ptrdiff_t>(end);
      if (end < cands.size()) std::nth_element(first, mid, cands.end(), better);
      std::sort(first, mid, better);
      sorted = end;
    }
    if (i > 0 && cum >= target) break;
    cum += cands[i].e;
    ++i;
  }
  return i;
}

// First index of the maximum (ties -> lowest id). Two passes, because a vectorised max and a
// plain search beat one loop that carries (value, index) from element to element.
int32_t argmax(std::span<const float> logits) noexcept {
  const float mx = row_max(logits);
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == mx) return static_cast<int32_t>(i);
  }
  return 0;  // all NaN: cannot happen after sanitize_and_max
}

}  // namespace

status sampling_params::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    return bad_field("temperature", ">= 0 and finite", temperature);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return bad_field("top_p", "in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return bad_field("min_p", "in [0, 1]", min_p);
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    return bad_field("repetition_penalty", "> 0 and finite", repetition_penalty);
  // OpenAI's documented range.
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return bad_field("presence_penalty", "in [-2, 2]", presence_penalty);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return bad_field("frequency_penalty", "in [-2, 2]", frequency_penalty);
  if (logprobs < 0) return bad_field("logprobs", ">= 0", logprobs);
  for (int32_t id : stop_token_ids) {
    if (id < 0) return bad_field("stop_token_ids", "token ids >= 0", id);
  }
  return {};
}

sampler::sampler(sampling_params params, std::span<const int32_t> prompt_ids)
    : params_(std::move(params)), rng_(params_.seed ? *params_.seed : random_seed()) {
  if (params_.repetition_penalty != 1.0f) seen_.insert(prompt_ids.begin(), prompt_ids.end());
}

void sampler::accept(int32_t token) {
  if (!params_.has_penalties()) return;
  if (params_.repetition_penalty != 1.0f) seen_.insert(token);
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) ++out_counts_[token];
}

void sampler::apply_penalties(std::span<float> logits) {
  raw_saved_.clear();
  const auto n = static_cast<int32_t>(logits.size());
  const float rep = params_.repetition_penalty;
  if (rep != 1.0f) {
    for (int32_t id : seen_) {
      if (id < 0 || id >= n) continue;
      float& l = logits[static_cast<size_t>(id)];
      raw_saved_.emplace_back(id, l);
      l = l > 0.0f ? l / rep : l * rep;  // HF/vLLM: always towards "less likely"
    }
  }
  for (const auto& [id, count] : out_counts_) {
    if (id < 0 || id >= n) continue;
    float& l = logits[static_cast<size_t>(id)];
    // With a repetition penalty every output token is also in seen_, so its raw value is saved.
    if (rep == 1.0f) raw_saved_.emplace_back(id, l);
    l -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
  }
}

float sampler::raw_logit(std::span<const float> logits, int32_t id) const {
  for (const auto& [saved_id, raw] : raw_saved_) {
    if (saved_id == id) return raw;
  }
  return logits[static_cast<size_t>(id)];
}

sample_result sampler::sample(std::span<float> logits) {
  sample_result result;
  if (logits.empty()) return result;

  // Raw distribution: when log-probabilities are asked for, its log-normaliser and the top-N.
  const float raw_max = sanitize_and_max(logits);
  const bool want_logprobs = params_.chosen_logprob || params_.logprobs > 0;
  double log_norm = raw_max;
  if (want_logprobs && raw_max > neg_inf) log_norm = raw_max + std::log(sum_exp(logits, raw_max, 1.0f));
  auto logprob_of = [&](float raw) {
    return raw_max > neg_inf ? static_cast<float>(raw - log_norm) : neg_inf;
  };
  if (params_.logprobs > 0) {
    const size_t top_n = std::min(static_cast<size_t>(params_.logprobs), logits.size());
    auto& heap = result.top;  // heap front = the worst of the best so far
    heap.reserve(top_n);
    for (size_t i = 0; i < logits.size(); ++i) {
      const token_logprob t{static_cast<int32_t>(i), logits[i]};
      if (heap.size() < top_n) {
        heap.push_back(t);
        std::push_heap(heap.begin(), heap.end(), better_lp);
      } else if (better_lp(t, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better_lp);
        heap.back() = t;
        std::push_heap(heap.begin(), heap.end(), better_lp);
      }
    }
    std::sort_heap(heap.begin(), heap.end(), better_lp);  // best first
    for (auto& t : heap) t.logprob = logprob_of(t.logprob);
  }

  if (params_.has_penalties()) apply_penalties(logits);
  else raw_saved_.clear();

  const int32_t token =
      params_.temperature < greedy_below ? argmax(logits) : sample_random(logits);
  result.token = token;
  if (want_logprobs) result.logprob = logprob_of(raw_logit(logits, token));
  result.is_stop = std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), token) !=
                   params_.stop_token_ids.end();
  accept(token);
  return result;
}

int32_t sampler::sample_random(std::span<const float> logits) {
  const size_t n = logits.size();
  const float inv_t = 1.0f / params_.temperature;
  const float min_p = params_.min_p;
  const bool top_k_on = params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n;
  const bool top_p_on = params_.top_p < 1.0f;

  const float max = row_max(logits);
  if (!(max > neg_inf)) return argmax(logits);  // everything masked: nothing to draw from
  // Unnormalised probability at temperature: 1 for the max, so p / p_max == weight.
  auto weight = [&](float l) { return exp_nonpos((l - max) * inv_t); };

  if (!top_k_on && !top_p_on) return draw_in_id_order(logits, max, inv_t);

  auto& cands = tl_candidates;
  cands.clear();
  size_t sorted = 0;  // cands[0, sorted) is in `better` order
  if (top_k_on) {
    select_top_k(logits, static_cast<size_t>(params_.top_k), cands);
    sorted = cands.size();
    for (auto& c : cands) c.e = weight(c.logit);
  } else {
    // Top-p alone. Tokens with weight >= t come first in sorted order, so if their mass already
    // reaches the target, the kept prefix lies among them and the rest need not be looked at.
    // Peaked (real) distributions pass with a few hundred candidates; flat ones fall back.
    auto& w = tl_weights;
    w.resize(n);
    fill_weights(logits, max, inv_t, 0.0f, w.data());
    const double target = static_cast<double>(params_.top_p) * sum_lanes(w);
    double mass = 0.0;
    for (size_t i = 0; i < n; ++i) {
      if (w[i] >= top_p_prefilter) {
        cands.push_back({logits[i], w[i], static_cast<int32_t>(i)});
        mass += w[i];
      }
    }
    if (mass < target) {
      cands.clear();
      for (size_t i = 0; i < n; ++i) cands.push_back({logits[i], w[i], static_cast<int32_t>(i)});
    }
  }

  size_t kept = cands.size();
  if (top_p_on) kept = top_p_prefix(cands, sorted, params_.top_p);
  if (min_p > 0.0f) {
    // The kept prefix is sorted and weights are p / p_max, so drop from the tail.
    while (kept > 1 && cands[kept - 1].e < min_p) --kept;
  }

  double kept_total = 0.0;
  for (size_t i = 0; i < kept; ++i) kept_total += cands[i].e;
  const double u = rng_.uniform() * kept_total;
  double cum = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cum += cands[i].e;
    if (cum > u) return cands[i].id;
  }
  // u landed past the rounded sum: the last token that has any weight.
  size_t last = kept - 1;
  while (last > 0 && cands[last].e == 0.0f) --last;
  return cands[last].id;
}

int32_t sampler::draw_in_id_order(std::span<const float> logits, float max, float inv_t) {
  // Temperature and min-p only: no sorting at all. Weights go in blocks whose sums let the walk
  // skip whole blocks; the order (ids ascending) is canonical, so the draw is too.
  const size_t n = logits.size();
  const size_t n_blocks = (n + walk_block - 1) / walk_block;
  auto& w = tl_weights;
  auto& block_sums = tl_block_sums;
  w.resize(n);
  block_sums.resize(n_blocks);
  fill_weights(logits, max, inv_t, params_.min_p, w.data());
  double total = 0.0;
  for (size_t b = 0; b < n_blocks; ++b) {
    const size_t lo = b * walk_block, hi = std::min(n, lo + walk_block);
    block_sums[b] = sum_lanes(std::span<const float>(w).subspan(lo, hi - lo));
    total += block_sums[b];
  }
  const double u = rng_.uniform() * total;
  double cum = 0.0;
  size_t b = 0;
  while (b + 1 < n_blocks && cum + block_sums[b] <= u) cum += block_sums[b++];
  // The block sum was added in lanes, the walk adds in order: if rounding leaves u unreached,
  // take the block's last token with any weight.
  const size_t lo = b * walk_block, hi = std::min(n, lo + walk_block);
  size_t last = lo;
  for (size_t i = lo; i < hi; ++i) {
    if (w[i] == 0.0f) continue;
    cum += w[i];
    last = i;
    if (cum > u) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last);
}

}  // namespace troupe
