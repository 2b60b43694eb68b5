#pragma once
// The Llama-family forward pass (Llama 1/2/3, Mistral, Qwen2, SmolLM) over a paged KV cache.
// One call runs a whole iteration batch; a sequence's results do not depend on its batch-mates
// (the kernels compute every token's products in the same order whatever the batch holds).

#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/comm/parallel.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kv/kv_pool.hpp"
#include "runtime/model/forward_batch.hpp"
#include "runtime/model/weights.hpp"

namespace troupe {

/// Options of the CPU model runner.
struct model_options {
  int threads = 0;  ///< worker threads for the kernels, the caller included; 0: all cores
  /// Copy the matrices out of the mapped file at load, into huge-page memory (cpu::huge_buffer),
  /// Q8_0 and Q4_0 in the layout of the fast kernel where the CPU has one (cpu::pack_weight: 2-3x
  /// faster batched steps), the others as they are (fewer TLB misses: about 10% faster decode of a
  /// 1.1B F16 model). The copy takes as much memory as the matrices, per replica; the file stays
  /// mapped but its pages are no longer read. false: run on the mapped file as it is, whose pages
  /// the page cache shares between processes.
  bool repack = true;
  /// This shard's place in a tensor/pipeline-parallel replica and its communicators (host buffers);
  /// the default is the whole model in one shard.
  parallel_context parallel{};
};

/// One layer's tensors as the forward pass reads them.
struct llama_layer_tensors {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  cpu::weight_ref wq, wk, wv, wo, w_gate, w_up, w_down;
  const float* bq = nullptr;  ///< Qwen2's projection biases (null without)
  const float* bk = nullptr;
  const float* bv = nullptr;
};

/// The tensors of a Llama-family model bound by name and checked against its hyper-parameters:
/// what the forward pass reads, on the CPU (llama_model) and on a GPU (cuda_model uploads them and
/// rebinds the pointers).
struct llama_tensors {
  cpu::weight_ref tok_embd, output;  ///< output is tok_embd with tied embeddings
  const float* output_norm = nullptr;
  std::vector<llama_layer_tensors> layers;
  std::vector<float> inv_freq;       ///< RoPE frequencies, scaling and rope_freqs.weight applied

  /// Bytes of weights read to produce one token (every matrix once, one embedding row).
  size_t weight_bytes_per_token() const noexcept;
};

/// Binds and checks every tensor the forward pass needs; names the first missing or misshapen one.
expected<llama_tensors> bind_llama_tensors(const model_weights& w);

class llama_model {
 public:
  /// Binds the weights (memory-mapped; the matrices copied out with opts.repack) and checks what the
  /// forward pass needs. With a
  /// parallel layout (opts.parallel), keeps only this shard's part: its stage's layers, and in each
  /// its rank's heads and feed-forward rows (Megatron style: wq/wk/wv, w_gate and w_up split by rows,
  /// wo and w_down by columns, the latter copied); the embedding on the first stage only, the output
  /// norm and projection on the sampling shard only. A layout the model does not divide into is
  /// invalid_argument naming why.
  static expected<std::unique_ptr<llama_model>> create(model_weights weights, const model_options& opts = {});

  /// Runs the batch: writes K/V of every token into its sequence's blocks, and for each step with
  /// want_logits the logits of its last token into logits (n_logits x n_vocab, in step order).
  /// A shard of a parallel replica runs its part and exchanges activations with its peers: a later
  /// stage receives them from the one before instead of embedding the tokens; the tp ranks sum the
  /// attention and feed-forward outputs; an earlier stage sends its output on. Only the sampling
  /// shard writes logits (the others may pass an empty span). Every shard checks the batch
  /// (check_batch) before it communicates, so all shards of a replica refuse the same batches.
  /// kv holds this shard's layers and kv heads.
  status forward(const forward_batch& batch, kv_pool& kv, std::span<float> logits);

  /// The whole model's hyper-parameters, whatever part of it this shard holds.
  const model_hparams& hparams() const noexcept { return w_.hp; }
  /// This shard's part of the model (all of it without a parallel layout).
  const shard_shape& shard() const noexcept { return shard_; }
  const model_weights& weights() const noexcept { return w_; }
  int threads() const noexcept { return pool_->size(); }
  /// Bytes of weights this shard reads to produce one token (every matrix once, one embedding row).
  size_t weight_bytes_per_token() const noexcept { return t_.weight_bytes_per_token(); }
  /// Bytes of matrices this shard holds in its own memory (repacked, copied or sliced at load)
  /// rather than reading them from the mapped file.
  size_t copied_weight_bytes() const noexcept;

 private:
  llama_model() = default;
  /// Keeps this shard's part of t_ (the layout already checked against the model).
  void slice_tensors();
  bool owns_copy(const void* p) const noexcept;  ///< p lies in one of copies_
  void ensure_scratch(int64_t n_tokens, int64_t n_logits);
  /// A communicator's error as this shard's: which shard, what it was doing.
  unexpected comm_error(const error& e, const char* what) const;

  model_weights w_;
  std::unique_ptr<cpu::thread_pool> pool_;
  llama_tensors t_;
  parallel_context par_;
  shard_shape shard_;
  std::vector<cpu::packed_weight> packed_;  ///< owners of the weight_refs' packed copies
  std::vector<cpu::huge_buffer> copies_;  ///< owners of the other copies: column slices of a tp rank, float matrices
  // Activations for the largest batch seen so far, reused across calls.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, tmp_, last_;
  std::vector<cpu::attn_query> queries_;
};

/// Checks a batch against the model and a KV pool of n_blocks blocks of block_size tokens before
/// anything runs: positions within the context, block tables that cover them with valid ids, token
/// ids within the vocabulary. Names the first problem.
status check_batch(const forward_batch& batch, const model_hparams& hp, int64_t n_blocks, int block_size);

/// theta_i = base^(-2i/head_dim), with Llama-3 frequency scaling applied when enabled.
std::vector<float> rope_inv_freq(const model_hparams& hp);

}  // namespace troupe
