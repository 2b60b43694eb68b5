#pragma once
// The KV block manager: owns block *ids* (the memory lives with the shards). It keeps the free
// list, one block table per sequence, reference counts, the prefix cache and copy-on-write for
// forked sequences. Plain host code: the scheduler calls it, tests drive it directly.
//
// Prefix cache: every full block whose KV has been computed is named by a hash chain,
// hash(parent block's hash, the block's token ids) (XXH3-64). A new sequence takes every cached
// full block of its prefix instead of computing it again. A block nobody references stays cached
// and is only evicted, least recently used first, when a free block is needed. The last, partial
// block of a sequence is never cached, and a prefix is never taken whole: the last token is always
// recomputed, so the step that follows has logits to sample from.

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/serving/step_plan.hpp"

namespace troupe {

/// Settings of a kv_block_manager.
struct kv_block_manager_config {
  int block_size = 16;               ///< tokens per block (must match the shards' kv_pool)
  int64_t n_blocks = 0;              ///< blocks in the pool (the shards' kv_pool::n_blocks())
  bool enable_prefix_caching = true; ///< reuse computed full blocks across sequences
};

/// Counters for /metrics.
struct kv_block_stats {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;          ///< referenced by at least one sequence
  int64_t blocks_free = 0;          ///< unreferenced (allocatable), cached ones included
  int64_t blocks_cached = 0;        ///< unreferenced blocks still holding a cached prefix
  int64_t evictions = 0;            ///< cached blocks reused for something else
  int64_t prefix_query_tokens = 0;  ///< prompt tokens looked up in the prefix cache by allocate()
  int64_t prefix_hit_tokens = 0;    ///< of those, tokens found cached

  /// Adds another pool's counters (several replicas of a model).
  kv_block_stats& operator+=(const kv_block_stats& o) noexcept {
    blocks_total += o.blocks_total;
    blocks_used += o.blocks_used;
    blocks_free += o.blocks_free;
    blocks_cached += o.blocks_cached;
    evictions += o.evictions;
    prefix_query_tokens += o.prefix_query_tokens;
    prefix_hit_tokens += o.prefix_hit_tokens;
    return *this;
  }
};

/// Hash of one full block in the chain: parent's hash and the block's token ids.
using prefix_hash = uint64_t;

class kv_block_manager {
 public:
  explicit kv_block_manager(const kv_block_manager_config& cfg);

  const kv_block_manager_config& config() const noexcept { return cfg_; }

  /// The root a salted sequence's chain hangs from (vLLM's cache_salt): a sequence with a salt only
  /// meets cached blocks of sequences with the same salt. nullopt for "" (the shared, unsalted chain).
  static std::optional<prefix_hash> salt_root(std::string_view salt);

  /// Tokens at the start of `tokens` whose KV the prefix cache holds (whole blocks; never the
  /// last token), in the chain under root (see salt_root). No side effects.
  int64_t cached_prefix(std::span<const int32_t> tokens, std::optional<prefix_hash> root = std::nullopt) const;

  /// Starts sequence `seq`: takes the cached prefix of `tokens` (see cached_prefix) and fresh
  /// blocks so the table covers max(cached, n_positions) positions. Returns the number of tokens
  /// already computed; nullopt when there is no room (nothing changes). seq must be new.
  std::optional<int64_t> allocate(request_id seq, std::span<const int32_t> tokens, int64_t n_positions,
                                  std::optional<prefix_hash> root = std::nullopt);

  /// Grows seq's table to cover n_positions, before positions [write_from, n_positions) are
  /// written. A shared block in that range is replaced by a private copy (copy-on-write), and the
  /// copy the shards must make is appended to `copies`. false: no room (nothing changes).
  bool append_slots(request_id seq, int64_t write_from, int64_t n_positions, std::vector<block_copy>& copies);

  /// Registers in the prefix cache the full blocks of seq among its first n_computed tokens
  /// (`tokens` = the sequence's tokens so far) that are not registered yet.
  void cache_full_blocks(request_id seq, std::span<const int32_t> tokens, int64_t n_computed);

  /// Child shares parent's blocks (parallel sampling): every block, or with n_positions only
  /// those covering the first n_positions (the rest of parent's table is none of the child's
  /// business). Writes into a shared block then copy on write (append_slots).
  status fork(request_id parent, request_id child, std::optional<int64_t> n_positions = std::nullopt);

  /// Drops seq's references at once; blocks nobody holds go back to the free pool (cached ones
  /// stay cached until evicted).
  void free(request_id seq);

  /// Whether seq has a block table.
  bool has(request_id seq) const { return seqs_.count(seq) != 0; }
  /// seq's block table (empty when unknown).
  std::span<const int32_t> table(request_id seq) const;
  /// Blocks allocate()/append_slots() can still hand out (free + evictable cached).
  int64_t n_free() const noexcept { return static_cast<int64_t>(free_.size() + lru_.size()); }
  /// Reference count of a block (for tests and checks).
  int32_t ref_count(int32_t block) const { return blocks_[static_cast<size_t>(block)].ref; }
  /// Whether a block currently holds a prefix-cache entry.
  bool is_cached(int32_t block) const { return blocks_[static_cast<size_t>(block)].hash.has_value(); }
  /// Blocks needed to hold n positions.
  int64_t blocks_for(int64_t n_positions) const { return (n_positions + cfg_.block_size - 1) / cfg_.block_size; }

  kv_block_stats stats() const;

  /// The name of a full block in the prefix cache: its tokens hashed with the parent block's hash
  /// as seed (a fixed seed for a prompt's first block). The router's simulator names blocks alike.
  static prefix_hash hash_block(std::optional<prefix_hash> parent, std::span<const int32_t> tokens);

 private:
  struct block_state {
    int32_t ref = 0;
    std::optional<prefix_hash> hash;            ///< set while the block is in the prefix cache
    std::optional<prefix_hash> parent;          ///< the parent hash it was registered under
    std::vector<int32_t> tokens;                ///< its tokens, checked on lookup (no collisions)
    std::list<int32_t>::iterator lru_pos;       ///< valid when ref == 0 and hash is set
  };
  struct seq_state {
    std::vector<int32_t> blocks;
    std::vector<prefix_hash> hashes;  ///< hashes of blocks[0 .. hashes.size()), all full and computed
    std::optional<prefix_hash> root;  ///< the parent of the first block (salt_root)
  };

  /// The cached block holding `tokens` after `parent`, or -1.
  int32_t lookup(std::optional<prefix_hash> parent, std::span<const int32_t> tokens) const;
  /// A free block (evicting the least recently used cached one if needed); -1 when none.
  int32_t take_free();
  void add_ref(int32_t block);
  void drop_ref(int32_t block);
  void evict(int32_t block);

  kv_block_manager_config cfg_;
  std::vector<block_state> blocks_;
  std::vector<int32_t> free_;        ///< unreferenced, uncached blocks (a stack)
  std::list<int32_t> lru_;           ///< unreferenced cached blocks, least recently used first
  std::unordered_map<prefix_hash, int32_t> cache_;
  std::unordered_map<request_id, seq_state> seqs_;
  int64_t evictions_ = 0;
  int64_t query_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace troupe
