#pragma once
// A model bound to a device together with its KV pages: what the engine forwards through, whether
// the CPU (llama_model over a kv_pool) or a CUDA GPU (cuda_model) runs it. The device is chosen once,
// when the runner is created; callers do not branch on it.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "runtime/core/error.hpp"
#include "runtime/kv/kv_pool.hpp"
#include "runtime/model/forward_batch.hpp"
#include "runtime/model/llama_model.hpp"
#include "runtime/model/weights.hpp"

namespace troupe {

/// Where a model runs: the CPU, or CUDA device `index`.
struct device_spec {
  enum class kind_t { cpu, cuda };
  kind_t kind = kind_t::cpu;
  int index = 0;

  /// "cpu" or "cuda:N".
  std::string to_string() const;
  bool operator==(const device_spec&) const = default;
};

/// "cpu", "cuda" (device 0) or "cuda:N"; anything else is invalid_argument naming the text.
expected<device_spec> parse_device(std::string_view text);
/// Whether this build contains the CUDA backend (nvcc was found when it was built).
bool cuda_backend_built() noexcept;
/// Whether the device can be used here: for CUDA, unavailable naming the device and the CUDA error
/// (no driver, no GPU, no such index) or that this build has no CUDA backend. The CPU always can.
status check_device(const device_spec& device);

class model_runner {
 public:
  virtual ~model_runner() = default;

  /// Runs the batch: writes K/V of every token into its sequence's blocks, and for each step with
  /// want_logits the logits of its last token into logits (n_logits x n_vocab, in step order).
  virtual status forward(const forward_batch& batch, std::span<float> logits) = 0;
  /// Copies block src's keys and values into block dst, every layer (copy-on-write for a fork).
  virtual status copy_block(int32_t src, int32_t dst) = 0;

  virtual const model_hparams& hparams() const noexcept = 0;
  /// The weights as loaded (format, tensor types); the CUDA runner keeps its copies on the GPU.
  virtual const model_weights& weights() const noexcept = 0;
  /// Bytes of weights read to produce one token (every matrix once, one embedding row).
  virtual size_t weight_bytes_per_token() const noexcept = 0;
  virtual int block_size() const noexcept = 0;
  virtual int64_t n_blocks() const noexcept = 0;
  /// Bytes of K and V together, all layers, in the device's memory.
  virtual size_t kv_bytes() const noexcept = 0;
  /// "cpu" or "cuda:N (device name)", for logs and reports.
  virtual std::string device_name() const = 0;
  /// CPU threads the kernels run on (0 when a GPU runs them).
  virtual int threads() const noexcept = 0;
};

/// How to create a runner.
struct runner_options {
  device_spec device;
  model_options cpu;   ///< CPU threads, repacking and the parallel layout (the CPU runner only; a GPU refuses a layout other than one shard)
  kv_pool_config kv;   ///< block_size and n_blocks (already resolved: n_blocks > 0)
};

/// Binds the weights to the device and allocates the KV blocks there. A CUDA device that cannot be
/// used is `unavailable`, naming the device and the CUDA error.
expected<std::unique_ptr<model_runner>> create_model_runner(model_weights weights, const runner_options& opts);

}  // namespace troupe
