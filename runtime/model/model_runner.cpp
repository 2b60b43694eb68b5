#include "runtime/model/model_runner.hpp"

#if TROUPE_HAVE_CUDA
#include "runtime/model/cuda_model.hpp"
#endif

namespace troupe {
namespace {

/// The CPU: llama_model's forward pass over a kv_pool in host memory.
class cpu_runner final : public model_runner {
 public:
  cpu_runner(std::unique_ptr<llama_model> model, std::unique_ptr<kv_pool> kv)
      : model_(std::move(model)), kv_(std::move(kv)) {}

  status forward(const forward_batch& batch, std::span<float> logits) override {
    return model_->forward(batch, *kv_, logits);
  }
  status copy_block(int32_t src, int32_t dst) override { return kv_->copy_block(src, dst); }
  const model_hparams& hparams() const noexcept override { return model_->hparams(); }
  const model_weights& weights() const noexcept override { return model_->weights(); }
  size_t weight_bytes_per_token() const noexcept override { return model_->weight_bytes_per_token(); }
  int block_size() const noexcept override { return kv_->block_size(); }
  int64_t n_blocks() const noexcept override { return kv_->n_blocks(); }
  size_t kv_bytes() const noexcept override { return kv_->bytes(); }
  std::string device_name() const override { return "cpu"; }
  int threads() const noexcept override { return model_->threads(); }

 private:
  std::unique_ptr<llama_model> model_;
  std::unique_ptr<kv_pool> kv_;
};

}  // namespace

bool cuda_backend_built() noexcept {
#if TROUPE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

status check_device(const device_spec& device) {
  if (device.kind == device_spec::kind_t::cpu) return {};
#if TROUPE_HAVE_CUDA
  return cuda_model::check_device(device.index);
#else
  return make_error(errc::unavailable, device.to_string() +
                                           ": this build has no CUDA backend (nvcc was not found when it was built)");
#endif
}

expected<std::unique_ptr<model_runner>> create_model_runner(model_weights weights, const runner_options& opts) {
  if (opts.device.kind == device_spec::kind_t::cuda) {
    if (!opts.cpu.parallel.layout.single())
      return make_error(errc::invalid_argument, opts.device.to_string() + ": tensor and pipeline parallelism (" +
                                                    opts.cpu.parallel.layout.to_string() +
                                                    ") run on the CPU only for now");
#if TROUPE_HAVE_CUDA
    auto m = cuda_model::create(std::move(weights), opts.device.index, opts.kv);
    TROUPE_TRY(m);
    return std::unique_ptr<model_runner>(std::move(*m));
#else
    return unexpected{check_device(opts.device).error()};
#endif
  }
  auto model = llama_model::create(std::move(weights), opts.cpu);
  TROUPE_TRY(model);
  // The pool holds this shard's layers and kv heads only.
  const shard_shape& shard = (*model)->shard();
  auto kv = kv_pool::create(shard.n_layers, shard.n_kv_heads, (*model)->hparams().head_dim, opts.kv);
  TROUPE_TRY(kv);
  return std::unique_ptr<model_runner>(std::make_unique<cpu_runner>(std::move(*model), std::move(*kv)));
}

}  // namespace troupe
