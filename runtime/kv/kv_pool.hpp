#pragma once
// The paged KV cache's memory: for every layer, a pool of fixed-size blocks of keys and values.
// Block ids are handed out by a block_allocator (or, in the server, the KV block manager); a
// sequence's block table lists its blocks in order, so position p lives in block_table[p / B],
// slot p % B.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "runtime/core/error.hpp"

namespace troupe {

/// Shape and size of a KV pool.
struct kv_pool_config {
  int block_size = 16;        ///< tokens per block
  int64_t n_blocks = 0;       ///< blocks in the pool; 0: derive from max_bytes
  size_t max_bytes = 256ull << 20;  ///< budget for K and V of all layers when n_blocks == 0
};

/// The check of every KV block copy (the CPU pool and the GPU runner's pages): invalid_argument
/// naming both ids when either is outside [0, n_blocks).
status check_block_copy(int32_t src, int32_t dst, int64_t n_blocks);

class kv_pool {
 public:
  /// Allocates n_layers x n_blocks x block_size x n_kv_heads x head_dim floats for K and for V.
  static expected<std::unique_ptr<kv_pool>> create(int64_t n_layers, int64_t n_kv_heads,
                                                   int64_t head_dim, const kv_pool_config& cfg);

  cpu::kv_layer_view layer(int64_t l) noexcept;
  int block_size() const noexcept { return block_size_; }
  int64_t n_blocks() const noexcept { return n_blocks_; }
  /// Bytes of K and V together, all layers.
  size_t bytes() const noexcept { return k_.size() * 2; }
  /// Bytes one block takes across all layers (K and V).
  static size_t bytes_per_block(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int block_size);
  /// Copies block src's keys and values into block dst, every layer (copy-on-write for a forked
  /// sequence). invalid_argument if either id is outside [0, n_blocks).
  status copy_block(int32_t src, int32_t dst);

 private:
  kv_pool() = default;
  int64_t n_layers_ = 0, n_kv_heads_ = 0, head_dim_ = 0, n_blocks_ = 0;
  int block_size_ = 16;
  cpu::huge_buffer k_, v_;  ///< in huge pages, faulted in at creation
  float* k() const noexcept { return reinterpret_cast<float*>(k_.get()); }
  float* v() const noexcept { return reinterpret_cast<float*>(v_.get()); }
};

/// Free list of block ids. allocate() says "no room" with nullopt instead of failing.
class block_allocator {
 public:
  explicit block_allocator(int64_t n_blocks);
  std::optional<int32_t> allocate();
  void release(int32_t block);
  int64_t n_free() const noexcept { return static_cast<int64_t>(free_.size()); }
  int64_t n_total() const noexcept { return n_total_; }

 private:
  std::vector<int32_t> free_;
  int64_t n_total_;
};

/// A sequence's block table: the blocks holding its positions, in order.
struct block_table {
  std::vector<int32_t> blocks;

  /// Grows the table so it covers n_positions; false (table unchanged) if the allocator runs out.
  bool reserve(block_allocator& alloc, int64_t n_positions, int block_size);
  /// Returns every block to the allocator.
  void release(block_allocator& alloc);
};

}  // namespace troupe
