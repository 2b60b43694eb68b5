#include "runtime/serving/route_sim.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <queue>
#include <span>
#include <unordered_map>

#include "runtime/serving/kv_block_manager.hpp"
#include "runtime/serving/router_policy.hpp"

namespace troupe {
namespace {

constexpr int block = prefix_block_tokens;
constexpr int32_t vocab = 32000;
const std::string sim_model = "sim";

/// splitmix64: small, fast, and the same stream everywhere (std distributions are not).
class sim_rng {
 public:
  explicit sim_rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi].
  int uniform(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1)); }
  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double exponential(double mean) { return -std::log1p(-unit()) * mean; }

 private:
  uint64_t s_;
};

struct conversation {
  int group = 0;
  double start = 0;                 ///< arrival of the first turn
  std::vector<int32_t> head;        ///< the first prefix_blocks blocks of tokens (fewer if shorter)
  std::vector<uint64_t> chain;      ///< hash chain over every full block of the whole conversation
  std::vector<int64_t> prompt_len;  ///< per turn
  std::vector<int64_t> reply_len;   ///< per turn
  std::vector<double> think;        ///< per turn: the pause before it (turn 0: none)
};

struct workload {
  std::vector<conversation> conversations;
  int64_t requests = 0;
  /// The measured window: from the arrival of the conversation a quarter of the way in (caches
  /// warm, load up) to the last arrival (before the load drains away).
  double measure_from = 0, measure_to = 0;
};

double service_seconds(const route_sim_config& cfg, int64_t uncached_prompt, int64_t reply) {
  return cfg.overhead_seconds + cfg.prefill_seconds_per_token * static_cast<double>(uncached_prompt) +
         cfg.decode_seconds_per_token * static_cast<double>(reply);
}

void append_random(sim_rng& rng, std::vector<int32_t>& tokens, int n) {
  for (int i = 0; i < n; ++i) tokens.push_back(static_cast<int32_t>(3 + rng.next() % (vocab - 3)));
}

workload generate(const route_sim_config& cfg, int n_conversations) {
  sim_rng rng(cfg.seed);
  std::vector<std::vector<int32_t>> system(static_cast<size_t>(cfg.system_prompts));
  for (auto& s : system) append_random(rng, s, rng.uniform(cfg.system_tokens_min, cfg.system_tokens_max));
  // Zipf (s = 1) popularity of the system prompts: group g has weight 1 / (g + 1).
  std::vector<double> cdf(system.size());
  double sum = 0;
  for (size_t g = 0; g < cdf.size(); ++g) cdf[g] = (sum += 1.0 / static_cast<double>(g + 1));
  for (double& c : cdf) c /= sum;

  workload w;
  w.conversations.resize(static_cast<size_t>(n_conversations));
  const size_t head_tokens = static_cast<size_t>(cfg.routing.prefix_blocks) * block;
  double no_cache_service = 0;
  std::vector<int32_t> tokens;
  for (auto& c : w.conversations) {
    c.group = static_cast<int>(std::lower_bound(cdf.begin(), cdf.end() - 1, rng.unit()) - cdf.begin());
    tokens = system[static_cast<size_t>(c.group)];
    append_random(rng, tokens, rng.uniform(cfg.first_user_tokens_min, cfg.first_user_tokens_max));
    const int turns = rng.uniform(cfg.turns_min, cfg.turns_max);
    for (int t = 0; t < turns; ++t) {
      if (t > 0) append_random(rng, tokens, rng.uniform(cfg.user_tokens_min, cfg.user_tokens_max));
      c.prompt_len.push_back(static_cast<int64_t>(tokens.size()));
      c.reply_len.push_back(rng.uniform(cfg.reply_tokens_min, cfg.reply_tokens_max));
      c.think.push_back(t == 0 ? 0.0 : rng.exponential(cfg.think_seconds));
      append_random(rng, tokens, static_cast<int>(c.reply_len.back()));
      no_cache_service += service_seconds(cfg, c.prompt_len.back(), c.reply_len.back());
    }
    w.requests += turns;
    c.head.assign(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(std::min(head_tokens, tokens.size())));
    // The chain as kv_block_manager names the blocks in its prefix cache.
    std::optional<prefix_hash> parent;
    for (size_t b = 0; (b + 1) * block <= tokens.size(); ++b) {
      parent = kv_block_manager::hash_block(parent, std::span<const int32_t>(tokens).subspan(b * block, block));
      c.chain.push_back(*parent);
    }
  }
  // Little's law: mean in flight = request rate x mean service, with the cache-less service time.
  const double mean_service = no_cache_service / static_cast<double>(std::max<int64_t>(w.requests, 1));
  const double mean_turns = static_cast<double>(w.requests) / std::max(1, n_conversations);
  const double conversation_rate = cfg.load_per_replica * cfg.replicas / (mean_turns * mean_service);
  double t = 0;
  for (auto& c : w.conversations) c.start = (t += rng.exponential(1.0 / conversation_rate));
  w.measure_from = w.conversations[w.conversations.size() / 4].start;
  w.measure_to = w.conversations.back().start;
  return w;
}

/// Block hash -> cache slot: open addressing with linear probing, at most half full. The keys are
/// XXH3 hashes, uniform already, so their low bits pick the bucket. (std::unordered_map's node per
/// entry made the cache the simulator's bottleneck.)
class block_index {
 public:
  explicit block_index(int64_t capacity) {
    size_t n = 16;
    while (n < 2 * static_cast<size_t>(capacity)) n <<= 1;
    table_.assign(n, entry{0, -1});
    mask_ = n - 1;
  }
  int32_t find(uint64_t key) const {
    for (size_t i = key & mask_;; i = (i + 1) & mask_) {
      if (table_[i].slot < 0) return -1;
      if (table_[i].key == key) return table_[i].slot;
    }
  }
  /// key must be absent.
  void insert(uint64_t key, int32_t slot) {
    size_t i = key & mask_;
    while (table_[i].slot >= 0) i = (i + 1) & mask_;
    table_[i] = entry{key, slot};
  }
  /// key must be present. Backward-shift deletion keeps every probe run unbroken (no tombstones).
  void erase(uint64_t key) {
    size_t i = key & mask_;
    while (table_[i].key != key || table_[i].slot < 0) i = (i + 1) & mask_;
    for (size_t j = (i + 1) & mask_; table_[j].slot >= 0; j = (j + 1) & mask_) {
      const size_t home = table_[j].key & mask_;
      // Entry j may move into the hole at i unless its home lies cyclically in (i, j].
      const bool home_after_hole = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!home_after_hole) {
        table_[i] = table_[j];
        i = j;
      }
    }
    table_[i].slot = -1;
  }

 private:
  struct entry {
    uint64_t key;
    int32_t slot;  ///< -1: empty
  };
  std::vector<entry> table_;
  size_t mask_;
};

/// A replica's prefix cache: block hashes in LRU order (an intrusive list over fixed slots).
class lru_blocks {
 public:
  explicit lru_blocks(int64_t capacity) : capacity_(static_cast<int32_t>(capacity)), index_(capacity) {}

  /// Leading blocks of `chain` (at most `limit`) all present.
  int64_t match(std::span<const uint64_t> chain, int64_t limit) const {
    int64_t n = 0;
    while (n < limit && index_.find(chain[static_cast<size_t>(n)]) >= 0) ++n;
    return n;
  }
  /// Marks the first n blocks of chain used, inserting missing ones. The last block is touched
  /// first, so a chain's head ends most recent and is evicted last: a chain's tail goes before
  /// the blocks every later turn needs.
  void use(std::span<const uint64_t> chain, int64_t n) {
    for (int64_t i = n - 1; i >= 0; --i) touch(chain[static_cast<size_t>(i)]);
  }

 private:
  void touch(uint64_t h) {
    if (const int32_t s = index_.find(h); s >= 0) {
      unlink(s);
      push_front(s);
      return;
    }
    int32_t slot;
    if (static_cast<int32_t>(hash_.size()) < capacity_) {
      slot = static_cast<int32_t>(hash_.size());
      hash_.push_back(h);
      prev_.push_back(-1);
      next_.push_back(-1);
    } else {
      slot = tail_;
      unlink(slot);
      index_.erase(hash_[static_cast<size_t>(slot)]);
      hash_[static_cast<size_t>(slot)] = h;
    }
    index_.insert(h, slot);
    push_front(slot);
  }
  void unlink(int32_t s) {
    const auto i = static_cast<size_t>(s);
    (prev_[i] >= 0 ? next_[static_cast<size_t>(prev_[i])] : head_) = next_[i];
    (next_[i] >= 0 ? prev_[static_cast<size_t>(next_[i])] : tail_) = prev_[i];
  }
  void push_front(int32_t s) {
    const auto i = static_cast<size_t>(s);
    prev_[i] = -1;
    next_[i] = head_;
    if (head_ >= 0) prev_[static_cast<size_t>(head_)] = s;
    head_ = s;
    if (tail_ < 0) tail_ = s;
  }

  int32_t capacity_;
  std::vector<uint64_t> hash_;
  std::vector<int32_t> prev_, next_;
  int32_t head_ = -1, tail_ = -1;  ///< most / least recently used
  block_index index_;
};

/// In-flight counts per replica with the time integrals (over the measured window) the report needs.
class load_tracker {
 public:
  load_tracker(int n, double from, double to)
      : load_(static_cast<size_t>(n), 0), count_{static_cast<int64_t>(n)}, time_at_(1, 0.0), from_(from), to_(to) {}

  void advance(double t) {
    const double dt = std::min(t, to_) - std::max(now_, from_);
    if (dt > 0) {
      for (size_t l = 0; l <= static_cast<size_t>(max_); ++l) time_at_[l] += dt * static_cast<double>(count_[l]);
      total_integral_ += dt * static_cast<double>(total_);
      max_integral_ += dt * static_cast<double>(max_);
    }
    now_ = std::max(now_, t);
  }
  bool measuring() const { return now_ >= from_ && now_ <= to_; }
  int64_t load(int r) const { return load_[static_cast<size_t>(r)]; }
  int64_t total() const { return total_; }
  void add(int r, int64_t delta) {
    int64_t& l = load_[static_cast<size_t>(r)];
    --count_[static_cast<size_t>(l)];
    l += delta;
    total_ += delta;
    if (static_cast<size_t>(l) >= count_.size()) {
      count_.resize(static_cast<size_t>(l) + 1, 0);
      time_at_.resize(count_.size(), 0.0);
    }
    ++count_[static_cast<size_t>(l)];
    max_ = std::max(max_, l);
    while (max_ > 0 && count_[static_cast<size_t>(max_)] == 0) --max_;
    if (measuring()) peak_ = std::max(peak_, max_);
  }

  void report(route_sim_result& r) const {
    const double n = static_cast<double>(load_.size()), span = to_ - from_;
    r.measured_seconds = span;
    r.mean_load = span > 0 ? total_integral_ / (span * n) : 0;
    r.max_load_time_avg = span > 0 ? max_integral_ / span : 0;
    r.peak_load = peak_;
    double all = 0;
    for (double x : time_at_) all += x;
    double seen = 0;
    for (size_t l = 0; l < time_at_.size(); ++l) {
      seen += time_at_[l];
      if (seen >= 0.99 * all) {
        r.p99_load = static_cast<int64_t>(l);
        break;
      }
    }
  }

 private:
  std::vector<int64_t> load_;
  std::vector<int64_t> count_;  ///< replicas at each load level
  std::vector<double> time_at_; ///< replica-seconds spent at each level
  int64_t total_ = 0, max_ = 0, peak_ = 0;
  double from_, to_;
  double now_ = 0, total_integral_ = 0, max_integral_ = 0;
};

struct sim_event {
  double t;
  uint64_t seq;      ///< ties in time go in the order the events were made: deterministic
  int32_t conv;
  bool finish;
  bool operator>(const sim_event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

expected<route_sim_result> simulate(const route_sim_config& cfg, const workload& w, const std::string& strategy) {
  routing_config rc = cfg.routing;
  rc.strategy = strategy;
  auto made = make_replica_strategy(rc);
  TROUPE_TRY(made);
  router_policy policy(std::move(*made));
  const int n = cfg.replicas;
  std::unordered_map<std::string, int> index_of;
  std::vector<std::string> ids;
  for (int r = 0; r < n; ++r) {
    ids.push_back(sim_model + "/" + std::to_string(r));
    index_of.emplace(ids.back(), r);
    TROUPE_TRY(policy.add_replica(sim_model, ids.back()));
  }
  std::vector<lru_blocks> caches;
  caches.reserve(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) caches.emplace_back(cfg.cache_blocks);
  load_tracker loads(n, w.measure_from, w.measure_to);
  const int64_t c_milli = std::llround(rc.load_factor * 1000.0);

  route_sim_result res;
  res.strategy = strategy;
  res.replicas = n;
  struct conv_state {
    size_t turn = 0;
    int replica = -1;
  };
  std::vector<conv_state> state(w.conversations.size());
  std::priority_queue<sim_event, std::vector<sim_event>, std::greater<>> events;
  uint64_t seq = 0;
  for (size_t i = 0; i < w.conversations.size(); ++i)
    events.push(sim_event{w.conversations[i].start, seq++, static_cast<int32_t>(i), false});
  double service_sum = 0;
  while (!events.empty()) {
    const sim_event ev = events.top();
    events.pop();
    loads.advance(ev.t);
    const conversation& c = w.conversations[static_cast<size_t>(ev.conv)];
    conv_state& st = state[static_cast<size_t>(ev.conv)];
    const int64_t plen = c.prompt_len[st.turn], reply = c.reply_len[st.turn];
    if (!ev.finish) {
      const std::span<const int32_t> head(c.head.data(), std::min(c.head.size(), static_cast<size_t>(plen)));
      auto picked = policy.pick(sim_model, prefix_key(head, rc.prefix_blocks));
      TROUPE_TRY(picked);
      const int r = index_of.at(*picked);
      const bool over = loads.load(r) + 1 > bounded_load_capacity(c_milli, loads.total(), static_cast<size_t>(n));
      policy.on_start(*picked);
      loads.add(r, +1);
      lru_blocks& cache = caches[static_cast<size_t>(r)];
      const int64_t cached = cache.match(c.chain, (plen - 1) / block) * block;  // never the last token
      cache.use(c.chain, plen / block);
      const double service = service_seconds(cfg, plen - cached, reply);
      if (loads.measuring()) {
        ++res.requests;
        res.over_bound += over;
        res.prompt_tokens += plen;
        res.cached_tokens += cached;
        service_sum += service;
      }
      st.replica = r;
      events.push(sim_event{ev.t + service, seq++, ev.conv, true});
    } else {
      policy.on_finish(ids[static_cast<size_t>(st.replica)]);
      loads.add(st.replica, -1);
      caches[static_cast<size_t>(st.replica)].use(c.chain, (plen + reply) / block);
      if (++st.turn < c.prompt_len.size()) events.push(sim_event{ev.t + c.think[st.turn], seq++, ev.conv, false});
    }
  }
  res.hit_rate = res.prompt_tokens > 0 ? static_cast<double>(res.cached_tokens) / static_cast<double>(res.prompt_tokens) : 0;
  res.mean_service_seconds = res.requests > 0 ? service_sum / static_cast<double>(res.requests) : 0;
  loads.report(res);
  return res;
}

status check_range(const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    return make_error(errc::invalid_argument, std::string(field) + ": must be in [" + std::to_string(lo) + ", " +
                                                  std::to_string(hi) + "], got " + std::to_string(v));
  return {};
}

status check_span(const char* field, int lo, int hi) {
  TROUPE_TRY(check_range(field, lo, 1, 1 << 20));
  if (hi < lo)
    return make_error(errc::invalid_argument, std::string(field) + ": max " + std::to_string(hi) + " is below min " +
                                                  std::to_string(lo));
  return {};
}

status check(const route_sim_config& cfg) {
  routing_config rc = cfg.routing;
  rc.strategy = "chwbl";
  TROUPE_TRY(validate(rc));
  TROUPE_TRY(check_range("replicas", cfg.replicas, 1, 1 << 16));
  TROUPE_TRY(check_range("conversations", cfg.conversations, 0, 1 << 24));
  TROUPE_TRY(check_range("system_prompts", cfg.system_prompts, 1, 1 << 20));
  TROUPE_TRY(check_range("cache_blocks", cfg.cache_blocks, 1, int64_t{1} << 30));
  TROUPE_TRY(check_span("system_tokens", cfg.system_tokens_min, cfg.system_tokens_max));
  TROUPE_TRY(check_span("first_user_tokens", cfg.first_user_tokens_min, cfg.first_user_tokens_max));
  TROUPE_TRY(check_span("user_tokens", cfg.user_tokens_min, cfg.user_tokens_max));
  TROUPE_TRY(check_span("reply_tokens", cfg.reply_tokens_min, cfg.reply_tokens_max));
  TROUPE_TRY(check_span("turns", cfg.turns_min, cfg.turns_max));
  for (auto [field, v] : {std::pair{"load_per_replica", cfg.load_per_replica}, std::pair{"think_seconds", cfg.think_seconds},
                          std::pair{"decode_seconds_per_token", cfg.decode_seconds_per_token}})
    if (!(v > 0)) return make_error(errc::invalid_argument, std::string(field) + ": must be > 0, got " + std::to_string(v));
  if (!(cfg.overhead_seconds >= 0) || !(cfg.prefill_seconds_per_token >= 0))
    return make_error(errc::invalid_argument, "overhead_seconds and prefill_seconds_per_token must be >= 0");
  return {};
}

}  // namespace

expected<std::vector<route_sim_result>> run_route_sim(const route_sim_config& cfg) {
  TROUPE_TRY(check(cfg));
  // By default enough conversations that the measured window sees several lifetimes of them.
  const int conversations = cfg.conversations > 0 ? cfg.conversations
                                                  : static_cast<int>(std::ceil(8 * cfg.load_per_replica * cfg.replicas));
  const workload w = generate(cfg, conversations);
  std::vector<route_sim_result> out;
  for (std::string_view s : routing_strategy_names()) {
    auto r = simulate(cfg, w, std::string(s));
    TROUPE_TRY(r);
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace troupe
