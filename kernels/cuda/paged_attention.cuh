#pragma once
// Paged attention on the GPU, for decode tokens and prefill chunks alike: every token of the batch is
// a query that attends to positions [0, pos] of its sequence through the sequence's block table. The
// K/V of the whole batch are written first (kv_write), so a prefill chunk is causal within itself and
// sees all of its sequence's earlier cached blocks. Heads are grouped-query (n_heads a multiple of
// kv.n_kv_heads). A long context is split over the sequence (flash-decoding: each split keeps its own
// running max and sum, and a second kernel merges the splits) when the batch alone would not fill the GPU.

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/token_pages.hpp"

namespace troupe::cuda {

/// Largest head_dim the kernel takes.
inline constexpr int attention_max_head_dim = 256;

/// Device workspace that paged_attention needs at most, whatever the batch, for this head_dim.
size_t paged_attention_workspace_bytes(int head_dim);

/// out[t] (n_heads * head_dim) = softmax(q[t] . K^T * scale) V over positions [0, pos[t]] of token t's
/// sequence, for every token of the batch. max_ctx bounds pos[t] + 1 over the batch (the host knows
/// it; it sizes the split). q, out, workspace and kv's pointers are device pointers.
dev_status paged_attention(const cpu::kv_layer_view& kv, const token_pages& tokens, const float* q, float* out,
                           int n_heads, float scale, int32_t max_ctx, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream);

}  // namespace troupe::cuda
