#pragma once
// Where the tokens of an iteration batch sit in the paged KV cache, as the GPU kernels read it.

#include <cstdint>

namespace troupe::cuda {

/// Per-token positions and block tables of a batch, all device pointers. Token t sits at position
/// pos[t] of its sequence, whose block table is block_tables[table_offset[t] ..]: position p of that
/// sequence lives in block block_tables[table_offset[t] + p / block_size], slot p % block_size.
struct token_pages {
  const int32_t* pos = nullptr;
  const int32_t* table_offset = nullptr;
  const int32_t* block_tables = nullptr;  ///< every sequence's table, back to back
  int64_t n_tokens = 0;
};

}  // namespace troupe::cuda
