#include "runtime/serving/routing_strategies.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>

namespace troupe {
namespace {

constexpr std::array<std::string_view, 4> strategy_names{"chwbl", "consistent-hash", "least-loaded", "round-robin"};

}  // namespace

std::span<const std::string_view> routing_strategy_names() { return strategy_names; }

std::string routing_strategy_list() {
  std::string out;
  for (auto n : strategy_names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

status validate(const routing_config& cfg) {
  if (std::find(strategy_names.begin(), strategy_names.end(), cfg.strategy) == strategy_names.end())
    return make_error(errc::invalid_argument,
                      "routing.strategy: unknown strategy '" + cfg.strategy + "' (known: " + routing_strategy_list() + ")");
  // NaN fails both comparisons' negations, so it is refused too.
  if (!(cfg.load_factor >= 1.0 && cfg.load_factor <= 100.0))
    return make_error(errc::invalid_argument, "routing.load_factor: must be in [1, 100] (a replica may hold c times the "
                                              "mean load), got " + std::to_string(cfg.load_factor));
  if (cfg.virtual_nodes < 1 || cfg.virtual_nodes > 4096)
    return make_error(errc::invalid_argument,
                      "routing.virtual_nodes: must be in [1, 4096], got " + std::to_string(cfg.virtual_nodes));
  if (cfg.prefix_blocks < 1 || cfg.prefix_blocks > 1024)
    return make_error(errc::invalid_argument,
                      "routing.prefix_blocks: must be in [1, 1024], got " + std::to_string(cfg.prefix_blocks));
  return {};
}

expected<std::unique_ptr<replica_strategy>> make_replica_strategy(const routing_config& cfg) {
  TROUPE_TRY(validate(cfg));
  std::unique_ptr<replica_strategy> s;
  if (cfg.strategy == "chwbl")
    s = std::make_unique<consistent_hash_strategy>(cfg.virtual_nodes, cfg.load_factor);
  else if (cfg.strategy == "consistent-hash")
    s = std::make_unique<consistent_hash_strategy>(cfg.virtual_nodes, 0.0);
  else if (cfg.strategy == "least-loaded")
    s = std::make_unique<least_loaded_strategy>();
  else
    s = std::make_unique<round_robin_strategy>();
  return s;
}

std::string prefix_key(std::span<const int32_t> prompt, int prefix_blocks, int block_tokens) {
  const size_t block = static_cast<size_t>(std::max(1, block_tokens));
  const size_t whole = std::min(prompt.size() / block, static_cast<size_t>(std::max(0, prefix_blocks)));
  const size_t n = whole > 0 ? whole * block : prompt.size();
  return std::string(reinterpret_cast<const char*>(prompt.data()), n * sizeof(int32_t));
}

int64_t bounded_load_capacity(int64_t load_factor_milli, int64_t total_in_flight, size_t n) {
  const int64_t den = 1000 * static_cast<int64_t>(std::max<size_t>(n, 1));
  return (load_factor_milli * (total_in_flight + 1) + den - 1) / den;
}

const replica_info& round_robin_strategy::choose(std::span<const replica_info* const> candidates,
                                                 std::string_view /*prefix_key*/) {
  uint64_t& turn = next_[candidates.front()->model];
  return *candidates[turn++ % candidates.size()];
}

consistent_hash_strategy::consistent_hash_strategy(int virtual_nodes, double load_factor)
    : virtual_nodes_(std::max(1, virtual_nodes)),
      load_factor_milli_(load_factor == 0.0 ? 0 : std::max<int64_t>(1000, std::llround(load_factor * 1000.0))) {}

consistent_hash_strategy::model_ring& consistent_hash_strategy::ring_of(const std::string& model) {
  return rings_.try_emplace(model, virtual_nodes_).first->second;
}

const hash_ring* consistent_hash_strategy::ring(const std::string& model) const {
  auto it = rings_.find(model);
  return it == rings_.end() ? nullptr : &it->second.ring;
}

void consistent_hash_strategy::on_replica_added(const replica_info& replica) { ring_of(replica.model).ring.add(replica.id); }

void consistent_hash_strategy::on_replica_removed(const replica_info& replica) {
  auto it = rings_.find(replica.model);
  if (it == rings_.end()) return;
  it->second.ring.remove(replica.id);
  if (it->second.ring.size() == 0) rings_.erase(it);
}

const replica_info& consistent_hash_strategy::choose(std::span<const replica_info* const> candidates,
                                                     std::string_view prefix_key) {
  model_ring& m = ring_of(candidates.front()->model);
  const uint64_t epoch = ++epoch_;
  int64_t total = 0;
  for (const replica_info* c : candidates) {
    // A replica the router never announced (a strategy driven directly) joins the ring here.
    if (!m.ring.contains(c->id)) m.ring.add(c->id);
    const auto s = static_cast<size_t>(m.ring.slot(c->id));
    if (s >= m.mark.size()) {
      m.mark.resize(m.ring.slot_bound(), 0);
      m.candidate.resize(m.ring.slot_bound(), nullptr);
    }
    m.mark[s] = epoch;
    m.candidate[s] = c;
    total += c->in_flight;
  }
  const int64_t capacity = bounded() ? bounded_load_capacity(load_factor_milli_, total, candidates.size()) : 0;
  const int32_t slot = m.ring.walk(hash_ring::hash_key(prefix_key), [&](int32_t s) {
    const auto i = static_cast<size_t>(s);
    if (i >= m.mark.size() || m.mark[i] != epoch) return false;  // unhealthy, already tried, or not this call's
    return !bounded() || m.candidate[i]->in_flight + 1 <= capacity;
  });
  // Every candidate has points on the ring, and with c >= 1 one of them is under capacity (see the
  // header), so the walk always finds one.
  assert(slot >= 0);
  return slot >= 0 ? *m.candidate[static_cast<size_t>(slot)] : *candidates.front();
}

}  // namespace troupe
