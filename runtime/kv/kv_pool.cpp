#include "runtime/kv/kv_pool.hpp"

#include <algorithm>
#include <new>
#include <string>

namespace troupe {

size_t kv_pool::bytes_per_block(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int block_size) {
  return static_cast<size_t>(n_layers * n_kv_heads * head_dim * block_size) * sizeof(float) * 2;
}

expected<std::unique_ptr<kv_pool>> kv_pool::create(int64_t n_layers, int64_t n_kv_heads,
                                                   int64_t head_dim, const kv_pool_config& cfg) {
  if (cfg.block_size <= 0 || n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0)
    return make_error(errc::invalid_argument, "kv pool: block_size, layers, heads and head_dim must be positive");
  const size_t per_block = bytes_per_block(n_layers, n_kv_heads, head_dim, cfg.block_size);
  int64_t n_blocks = cfg.n_blocks > 0 ? cfg.n_blocks : static_cast<int64_t>(cfg.max_bytes / per_block);
  if (n_blocks <= 0)
    return make_error(errc::invalid_argument,
                      "kv pool: a budget of " + std::to_string(cfg.max_bytes) + " bytes holds no block of " +
                          std::to_string(per_block) + " bytes");
  std::unique_ptr<kv_pool> pool(new kv_pool());
  pool->n_layers_ = n_layers;
  pool->n_kv_heads_ = n_kv_heads;
  pool->head_dim_ = head_dim;
  pool->n_blocks_ = n_blocks;
  pool->block_size_ = cfg.block_size;
  const size_t n = static_cast<size_t>(n_layers * n_blocks * cfg.block_size * n_kv_heads * head_dim);
  // Faulted in now: the first prefill should not pay for zeroing (and compacting) huge pages.
  pool->k_ = cpu::huge_buffer::allocate(n * sizeof(float), true);
  pool->v_ = cpu::huge_buffer::allocate(n * sizeof(float), true);
  if (!pool->k_ || !pool->v_)
    return make_error(errc::out_of_memory, "kv pool: cannot allocate " + std::to_string(2 * n * sizeof(float)) + " bytes");
  return pool;
}

cpu::kv_layer_view kv_pool::layer(int64_t l) noexcept {
  const size_t per_layer = static_cast<size_t>(n_blocks_ * block_size_ * n_kv_heads_ * head_dim_);
  return cpu::kv_layer_view{k() + l * per_layer, v() + l * per_layer, block_size_,
                            static_cast<int>(n_kv_heads_), static_cast<int>(head_dim_)};
}

status check_block_copy(int32_t src, int32_t dst, int64_t n_blocks) {
  if (src < 0 || src >= n_blocks || dst < 0 || dst >= n_blocks)
    return make_error(errc::invalid_argument, "kv pool: copy of block " + std::to_string(src) + " to " +
                                                  std::to_string(dst) + " is outside the " +
                                                  std::to_string(n_blocks) + " blocks");
  return {};
}

status kv_pool::copy_block(int32_t src, int32_t dst) {
  TROUPE_TRY(check_block_copy(src, dst, n_blocks_));
  if (src == dst) return {};
  const size_t per_block = static_cast<size_t>(block_size_ * n_kv_heads_ * head_dim_);
  const size_t per_layer = static_cast<size_t>(n_blocks_) * per_block;
  for (int64_t l = 0; l < n_layers_; ++l) {
    const size_t base = static_cast<size_t>(l) * per_layer;
    std::copy_n(k() + base + src * per_block, per_block, k() + base + dst * per_block);
    std::copy_n(v() + base + src * per_block, per_block, v() + base + dst * per_block);
  }
  return {};
}

block_allocator::block_allocator(int64_t n_blocks) : n_total_(n_blocks) {
  free_.reserve(static_cast<size_t>(n_blocks));
  // Hand out low ids first (pop from the back).
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<int32_t> block_allocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void block_allocator::release(int32_t block) { free_.push_back(block); }

bool block_table::reserve(block_allocator& alloc, int64_t n_positions, int block_size) {
  const size_t need = static_cast<size_t>((n_positions + block_size - 1) / block_size);
  if (need <= blocks.size()) return true;
  if (static_cast<size_t>(alloc.n_free()) < need - blocks.size()) return false;
  while (blocks.size() < need) blocks.push_back(*alloc.allocate());
  return true;
}

void block_table::release(block_allocator& alloc) {
  for (int32_t b : blocks) alloc.release(b);
  blocks.clear();
}

}  // namespace troupe
