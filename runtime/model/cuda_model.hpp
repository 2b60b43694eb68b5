#pragma once
// The Llama-family forward pass on a CUDA GPU (llama_model is the CPU's). The weights are uploaded
// once as they are (f16/bf16 for cuBLAS, Q8_0/Q4_0 blocks for the gemv kernel, norms f32); the paged
// KV cache lives in GPU memory with the engine's block size and count; a forward step runs the whole
// iteration batch on one stream, with one host-to-device copy of the batch's metadata (tokens,
// positions, block tables) and one device-to-host copy of the logits. Built with the CUDA backend only.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "runtime/model/model_runner.hpp"

namespace troupe {

class cuda_model final : public model_runner {
 public:
  /// Whether CUDA device `index` is there and usable: unavailable naming the device and the error.
  static status check_device(int index);
  /// Uploads the weights to device `index` and allocates kv.n_blocks KV blocks there (from
  /// kv.max_bytes when n_blocks is 0).
  static expected<std::unique_ptr<cuda_model>> create(model_weights weights, int index, const kv_pool_config& kv);
  ~cuda_model() override;
  cuda_model(const cuda_model&) = delete;
  cuda_model& operator=(const cuda_model&) = delete;

  status forward(const forward_batch& batch, std::span<float> logits) override;
  status copy_block(int32_t src, int32_t dst) override;
  const model_hparams& hparams() const noexcept override { return w_.hp; }
  const model_weights& weights() const noexcept override { return w_; }
  size_t weight_bytes_per_token() const noexcept override { return tensors_.weight_bytes_per_token(); }
  int block_size() const noexcept override { return block_size_; }
  int64_t n_blocks() const noexcept override { return n_blocks_; }
  size_t kv_bytes() const noexcept override { return 2 * kv_floats_ * sizeof(float); }
  std::string device_name() const override { return name_; }
  int threads() const noexcept override { return 0; }

 private:
  cuda_model() = default;
  status upload_weights();
  status allocate_kv(const kv_pool_config& kv);
  /// Grows the activations to n_tokens tokens and n_rows logit rows, and the metadata to n_meta ints.
  status reserve(int64_t n_tokens, int64_t n_rows, size_t n_meta);
  cpu::kv_layer_view kv_layer(int64_t l) const noexcept;
  /// "cuda:N: what", for error messages.
  std::string where(const std::string& what) const;

  model_weights w_;
  int device_ = 0;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;

  void* weights_mem_ = nullptr;  // every tensor the forward pass reads, and the RoPE frequencies
  llama_tensors tensors_;           // pointers into weights_mem_ (tensors_.inv_freq stays empty)
  const float* inv_freq_ = nullptr;

  float* kv_k_ = nullptr;
  float* kv_v_ = nullptr;
  size_t kv_floats_ = 0;  // of K (V likewise), all layers
  int block_size_ = 16;
  int64_t n_blocks_ = 0;

  void* attn_workspace_ = nullptr;
  size_t attn_workspace_bytes_ = 0;
  // Activations for the largest batch so far, one allocation.
  void* act_mem_ = nullptr;
  int64_t cap_tokens_ = 0, cap_rows_ = 0;
  float *x_ = nullptr, *xn_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr, *tmp_ = nullptr, *last_ = nullptr, *logits_ = nullptr;
  void* matmul_scratch_ = nullptr;
  size_t matmul_scratch_bytes_ = 0;
  // Batch metadata: pinned on the host, copied in one transfer.
  int32_t* meta_host_ = nullptr;
  int32_t* meta_dev_ = nullptr;
  size_t cap_meta_ = 0;
};

}  // namespace troupe
