#include "runtime/serving/kv_block_manager.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cassert>

namespace troupe {

kv_block_manager::kv_block_manager(const kv_block_manager_config& cfg) : cfg_(cfg) {
  if (cfg_.block_size <= 0) cfg_.block_size = 16;
  if (cfg_.n_blocks < 0) cfg_.n_blocks = 0;
  blocks_.resize(static_cast<size_t>(cfg_.n_blocks));
  free_.reserve(blocks_.size());
  // A stack popped from the back: blocks go out as 0, 1, 2, ... (predictable in tests and logs).
  for (int64_t b = cfg_.n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

prefix_hash kv_block_manager::hash_block(std::optional<prefix_hash> parent, std::span<const int32_t> tokens) {
  // The parent's hash seeds the hash of the block's tokens; the first block of a chain uses a
  // fixed seed. lookup() compares parent and tokens too, so a seed clash cannot mix chains.
  constexpr prefix_hash root_seed = 0x74726f7570652d31ull;  // "troupe-1"
  return XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), parent.value_or(root_seed));
}

std::optional<prefix_hash> kv_block_manager::salt_root(std::string_view salt) {
  if (salt.empty()) return std::nullopt;
  constexpr prefix_hash salt_seed = 0x74726f7570652d73ull;  // "troupe-s"
  return XXH3_64bits_withSeed(salt.data(), salt.size(), salt_seed);
}

int32_t kv_block_manager::lookup(std::optional<prefix_hash> parent, std::span<const int32_t> tokens) const {
  auto it = cache_.find(hash_block(parent, tokens));
  if (it == cache_.end()) return -1;
  const block_state& b = blocks_[static_cast<size_t>(it->second)];
  // A 64-bit collision would silently mix two prompts' KV: compare what the hash stands for.
  if (b.parent != parent || !std::equal(b.tokens.begin(), b.tokens.end(), tokens.begin(), tokens.end())) return -1;
  return it->second;
}

int64_t kv_block_manager::cached_prefix(std::span<const int32_t> tokens, std::optional<prefix_hash> root) const {
  if (!cfg_.enable_prefix_caching || tokens.empty()) return 0;
  const int64_t bs = cfg_.block_size;
  const int64_t usable = static_cast<int64_t>(tokens.size()) - 1;  // the last token is always recomputed
  std::optional<prefix_hash> parent = root;
  int64_t n = 0;
  while ((n + 1) * bs <= usable) {
    auto blk = tokens.subspan(static_cast<size_t>(n * bs), static_cast<size_t>(bs));
    const int32_t b = lookup(parent, blk);
    if (b < 0) break;
    parent = blocks_[static_cast<size_t>(b)].hash;
    ++n;
  }
  return n * bs;
}

std::optional<int64_t> kv_block_manager::allocate(request_id seq, std::span<const int32_t> tokens,
                                                  int64_t n_positions, std::optional<prefix_hash> root) {
  assert(!seqs_.count(seq));
  if (seqs_.count(seq)) return std::nullopt;
  const int64_t bs = cfg_.block_size;
  // The cached chain, as in cached_prefix(), remembering blocks and hashes.
  std::vector<int32_t> hit;
  std::vector<prefix_hash> hashes;
  if (cfg_.enable_prefix_caching && !tokens.empty()) {
    const int64_t usable = static_cast<int64_t>(tokens.size()) - 1;
    std::optional<prefix_hash> parent = root;
    while ((static_cast<int64_t>(hit.size()) + 1) * bs <= usable) {
      auto blk = tokens.subspan(hit.size() * static_cast<size_t>(bs), static_cast<size_t>(bs));
      const int32_t b = lookup(parent, blk);
      if (b < 0) break;
      hit.push_back(b);
      parent = blocks_[static_cast<size_t>(b)].hash;
      hashes.push_back(*parent);
    }
  }
  const int64_t cached = static_cast<int64_t>(hit.size()) * bs;
  const int64_t n_new = blocks_for(std::max(cached, n_positions)) - static_cast<int64_t>(hit.size());
  // Hit blocks sitting unreferenced in the LRU stop being allocatable once taken.
  int64_t hits_in_lru = 0;
  for (int32_t b : hit) hits_in_lru += blocks_[static_cast<size_t>(b)].ref == 0 ? 1 : 0;
  if (n_new > n_free() - hits_in_lru) return std::nullopt;

  seq_state st;
  for (int32_t b : hit) {
    add_ref(b);
    st.blocks.push_back(b);
  }
  for (int64_t i = 0; i < n_new; ++i) {
    const int32_t b = take_free();
    assert(b >= 0);
    add_ref(b);
    st.blocks.push_back(b);
  }
  st.hashes = std::move(hashes);
  st.root = root;
  seqs_.emplace(seq, std::move(st));
  query_tokens_ += static_cast<int64_t>(tokens.size());
  hit_tokens_ += cached;
  return cached;
}

bool kv_block_manager::append_slots(request_id seq, int64_t write_from, int64_t n_positions,
                                    std::vector<block_copy>& copies) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return false;
  seq_state& st = it->second;
  const int64_t have = static_cast<int64_t>(st.blocks.size());
  const int64_t need = blocks_for(n_positions);
  const int64_t first = std::max<int64_t>(0, write_from / cfg_.block_size);
  int64_t n_cow = 0;
  for (int64_t i = first; i < std::min(have, need); ++i) n_cow += ref_count(st.blocks[static_cast<size_t>(i)]) > 1 ? 1 : 0;
  const int64_t n_new = std::max<int64_t>(0, need - have);
  if (n_cow + n_new > n_free()) return false;

  for (int64_t i = first; i < std::min(have, need); ++i) {
    int32_t& slot = st.blocks[static_cast<size_t>(i)];
    if (ref_count(slot) <= 1) continue;
    const int32_t dst = take_free();
    add_ref(dst);
    copies.push_back(block_copy{slot, dst});
    drop_ref(slot);  // still held by the others
    slot = dst;
    // A written block is not the cached one any more: its hash (if it was full) is no longer ours.
    if (static_cast<int64_t>(st.hashes.size()) > i) st.hashes.resize(static_cast<size_t>(i));
  }
  for (int64_t i = 0; i < n_new; ++i) {
    const int32_t b = take_free();
    add_ref(b);
    st.blocks.push_back(b);
  }
  return true;
}

void kv_block_manager::cache_full_blocks(request_id seq, std::span<const int32_t> tokens, int64_t n_computed) {
  if (!cfg_.enable_prefix_caching) return;
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  seq_state& st = it->second;
  const int64_t bs = cfg_.block_size;
  const int64_t n_full = std::min<int64_t>(std::min<int64_t>(n_computed, static_cast<int64_t>(tokens.size())) / bs,
                                           static_cast<int64_t>(st.blocks.size()));
  for (int64_t i = static_cast<int64_t>(st.hashes.size()); i < n_full; ++i) {
    std::optional<prefix_hash> parent = st.root;
    if (i > 0) parent = st.hashes[static_cast<size_t>(i - 1)];
    auto blk = tokens.subspan(static_cast<size_t>(i * bs), static_cast<size_t>(bs));
    const prefix_hash h = hash_block(parent, blk);
    st.hashes.push_back(h);
    const int32_t b = st.blocks[static_cast<size_t>(i)];
    block_state& bst = blocks_[static_cast<size_t>(b)];
    if (bst.hash) continue;         // already cached (taken from the cache, or shared by a fork)
    if (cache_.count(h)) continue;  // another block holds the same prefix: keep that one
    bst.hash = h;
    bst.parent = parent;
    bst.tokens.assign(blk.begin(), blk.end());
    cache_.emplace(h, b);
  }
}

status kv_block_manager::fork(request_id parent, request_id child, std::optional<int64_t> n_positions) {
  auto it = seqs_.find(parent);
  if (it == seqs_.end())
    return make_error(errc::invalid_argument, "kv fork: sequence " + std::to_string(parent) + " has no blocks");
  if (seqs_.count(child))
    return make_error(errc::invalid_argument, "kv fork: sequence " + std::to_string(child) + " already exists");
  seq_state copy = it->second;
  if (n_positions) {
    const int64_t have = static_cast<int64_t>(copy.blocks.size());
    if (*n_positions < 0 || blocks_for(*n_positions) > have)
      return make_error(errc::invalid_argument, "kv fork: sequence " + std::to_string(parent) + " has " +
                                                    std::to_string(have) + " blocks, not enough for " +
                                                    std::to_string(*n_positions) + " positions");
    const auto keep = static_cast<size_t>(blocks_for(*n_positions));
    copy.blocks.resize(keep);
    if (copy.hashes.size() > keep) copy.hashes.resize(keep);
  }
  for (int32_t b : copy.blocks) add_ref(b);
  seqs_.emplace(child, std::move(copy));
  return {};
}

void kv_block_manager::free(request_id seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Last block first: the LRU then evicts a chain's tail before its head, which keeps the cached
  // part of a prefix contiguous.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) drop_ref(*b);
  seqs_.erase(it);
}

std::span<const int32_t> kv_block_manager::table(request_id seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return {};
  return it->second.blocks;
}

int32_t kv_block_manager::take_free() {
  if (!free_.empty()) {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  if (lru_.empty()) return -1;
  const int32_t b = lru_.front();
  evict(b);
  return b;
}

void kv_block_manager::evict(int32_t block) {
  block_state& st = blocks_[static_cast<size_t>(block)];
  assert(st.ref == 0 && st.hash);
  lru_.erase(st.lru_pos);
  cache_.erase(*st.hash);
  st.hash.reset();
  st.parent.reset();
  st.tokens.clear();
  ++evictions_;
}

void kv_block_manager::add_ref(int32_t block) {
  block_state& st = blocks_[static_cast<size_t>(block)];
  if (st.ref == 0 && st.hash) lru_.erase(st.lru_pos);
  ++st.ref;
}

void kv_block_manager::drop_ref(int32_t block) {
  block_state& st = blocks_[static_cast<size_t>(block)];
  assert(st.ref > 0);
  if (--st.ref > 0) return;
  if (st.hash) {
    st.lru_pos = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

kv_block_stats kv_block_manager::stats() const {
  kv_block_stats s;
  s.blocks_total = cfg_.n_blocks;
  s.blocks_free = n_free();
  s.blocks_used = s.blocks_total - s.blocks_free;
  s.blocks_cached = static_cast<int64_t>(lru_.size());
  s.evictions = evictions_;
  s.prefix_query_tokens = query_tokens_;
  s.prefix_hit_tokens = hit_tokens_;
  return s;
}

}  // namespace troupe
