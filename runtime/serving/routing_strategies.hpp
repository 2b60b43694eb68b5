#pragma once
// How the router spreads requests over the replicas of a model, and the prefix key it hashes.
//
// - "chwbl": consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2017; the
//   algorithm of Vimeo's and HAProxy's `hash-balance-factor`). The prefix key goes onto a ring of
//   virtual nodes per replica; the walk clockwise takes the first healthy replica whose in-flight
//   load stays within the bound below. Requests sharing a prefix land where that prefix is cached,
//   unless that replica is already carrying more than its share.
// - "consistent-hash": the same ring without the bound (the owner of the key's point, always).
// - "least-loaded": the fewest in-flight requests (no affinity).
// - "round-robin": each healthy replica in turn (no affinity, no load signal).
//
// The bound: with n candidate replicas holding L requests in flight, a replica may take the new
// request when load + 1 <= ceil(c * (L + 1) / n). L + 1 counts the request being placed, as the
// paper's capacity ceil(c * m / n) counts every ball including the new one, and it is HAProxy's
// formula too. For c >= 1 the n capacities add up to at least L + 1 > L, so some candidate is
// always under its capacity: the walk always ends, and no replica is ever pushed past the bound.
// c is kept in thousandths so the bound is exact integer arithmetic, the same on every machine.

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/serving/hash_ring.hpp"
#include "runtime/serving/router_policy.hpp"

namespace troupe {

/// Tokens per block of the prefix key: the KV block size, so a key covers exactly the full blocks
/// the prefix cache names.
inline constexpr int prefix_block_tokens = 16;

/// The `routing:` section of the serve config.
struct routing_config {
  std::string strategy = "chwbl";  ///< chwbl | consistent-hash | least-loaded | round-robin
  double load_factor = 1.25;       ///< c of the chwbl bound (>= 1, in steps of 0.001)
  int virtual_nodes = 128;         ///< ring points per replica (consistent-hash, chwbl)
  int prefix_blocks = 4;           ///< whole 16-token blocks of the prompt in the prefix key
};

/// The strategy names, sorted.
std::span<const std::string_view> routing_strategy_names();
/// "a, b, c" of routing_strategy_names(), for error messages.
std::string routing_strategy_list();

/// Checks a routing config: a known strategy, load_factor in [1, 100], virtual_nodes in [1, 4096],
/// prefix_blocks in [1, 1024]. invalid_argument names the field ("routing.load_factor").
status validate(const routing_config& cfg);

/// The strategy the config names; invalid_argument (see validate) otherwise.
expected<std::unique_ptr<replica_strategy>> make_replica_strategy(const routing_config& cfg);

/// The prefix key of a prompt: the bytes of the token ids of its first `prefix_blocks` whole
/// blocks of `block_tokens` tokens. Only whole blocks count, so a key never depends on a partial
/// block; a prompt shorter than one block gives all of its tokens.
std::string prefix_key(std::span<const int32_t> prompt, int prefix_blocks, int block_tokens = prefix_block_tokens);

/// ceil(load_factor_milli / 1000 * (total_in_flight + 1) / n): the most requests one of n
/// replicas may hold once the next request is placed (see the header comment). n >= 1.
int64_t bounded_load_capacity(int64_t load_factor_milli, int64_t total_in_flight, size_t n);

/// Each candidate in turn, per model.
class round_robin_strategy final : public replica_strategy {
 public:
  const replica_info& choose(std::span<const replica_info* const> candidates, std::string_view prefix_key) override;

 private:
  std::map<std::string, uint64_t> next_;  ///< model -> turns taken
};

/// Consistent hashing over the prefix key, one ring per model, with or without bounded loads.
/// Every replica the router knows keeps its ring points while it is unhealthy (it is only skipped),
/// so a replica that recovers owns the same keys again. Deterministic: the choice depends only on
/// the replica ids, the key, and the candidates' loads.
class consistent_hash_strategy final : public replica_strategy {
 public:
  /// load_factor 0: unbounded (plain consistent hashing); otherwise clamped to >= 1.
  consistent_hash_strategy(int virtual_nodes, double load_factor);

  const replica_info& choose(std::span<const replica_info* const> candidates, std::string_view prefix_key) override;
  void on_replica_added(const replica_info& replica) override;
  void on_replica_removed(const replica_info& replica) override;

  bool bounded() const noexcept { return load_factor_milli_ > 0; }
  /// The ring of a model (nullptr before its first replica).
  const hash_ring* ring(const std::string& model) const;

 private:
  struct model_ring {
    explicit model_ring(int virtual_nodes) : ring(virtual_nodes) {}
    hash_ring ring;
    // Per-slot side tables for one choose() call: a slot is a candidate when its mark is the
    // call's epoch, and then `candidate` points at its replica_info.
    std::vector<uint64_t> mark;
    std::vector<const replica_info*> candidate;
  };
  model_ring& ring_of(const std::string& model);

  int virtual_nodes_;
  int64_t load_factor_milli_;  ///< 0: unbounded
  uint64_t epoch_ = 0;
  std::map<std::string, model_ring> rings_;
};

}  // namespace troupe
