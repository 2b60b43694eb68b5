#include "runtime/model/cuda_model.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <string>
#include <type_traits>

#include "kernels/cuda/add.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/kv_write.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/paged_attention.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/silu_mul.cuh"
#include "runtime/core/log.hpp"
#include "runtime/model/cuda_status.hpp"

namespace troupe {
namespace {

constexpr size_t alignment = 256;
size_t align_up(size_t n) { return (n + alignment - 1) / alignment * alignment; }

size_t matrix_bytes(const cpu::weight_ref& w) { return row_bytes(w.type, w.cols) * static_cast<size_t>(w.rows); }

}  // namespace

status cuda_model::check_device(int index) {
  const std::string dev = "cuda:" + std::to_string(index);
  int n = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess)
    return cuda_status(e, dev + ": no usable CUDA device");
  if (n == 0) return make_error(errc::unavailable, dev + ": no CUDA device on this machine");
  if (index < 0 || index >= n)
    return make_error(errc::unavailable, dev + ": this machine has " + std::to_string(n) + " CUDA device" +
                                             (n == 1 ? "" : "s") + " (cuda:0 .. cuda:" + std::to_string(n - 1) + ")");
  return {};
}

expected<std::unique_ptr<cuda_model>> cuda_model::create(model_weights weights, int index, const kv_pool_config& kv) {
  TROUPE_TRY(check_device(index));
  std::unique_ptr<cuda_model> m(new cuda_model());
  m->w_ = std::move(weights);
  m->device_ = index;
  const model_hparams& hp = m->w_.hp;
  if (hp.n_heads <= 0 || hp.n_kv_heads <= 0 || hp.n_heads % hp.n_kv_heads != 0 || hp.head_dim % 2 != 0)
    return make_error(errc::bad_format, "model: heads (" + std::to_string(hp.n_heads) + ") must be a positive multiple of kv heads (" +
                                            std::to_string(hp.n_kv_heads) + ") and head_dim even");
  if (hp.head_dim > cuda::attention_max_head_dim)
    return make_error(errc::unsupported_architecture, m->where("head_dim " + std::to_string(hp.head_dim) + " is above the " +
                                                               std::to_string(cuda::attention_max_head_dim) +
                                                               " the CUDA attention kernel takes"));
  TROUPE_TRY(cuda_status(cudaSetDevice(index), m->where("select the device")));
  cudaDeviceProp prop{};
  TROUPE_TRY(cuda_status(cudaGetDeviceProperties(&prop, index), m->where("device properties")));
  m->name_ = "cuda:" + std::to_string(index) + " (" + prop.name + ")";
  TROUPE_TRY(cuda_status(cudaStreamCreateWithFlags(&m->stream_, cudaStreamNonBlocking), m->where("create a stream")));
  const cuda::cublas_api* blas = cuda::cublas();
  if (!blas) return make_error(errc::unavailable, m->where(cuda::cublas_load_error()));
  TROUPE_TRY(cuda_status(cuda::check(blas->create(&m->blas_)), m->where("create a cuBLAS handle")));
  TROUPE_TRY(m->upload_weights());
  TROUPE_TRY(m->allocate_kv(kv));
  m->attn_workspace_bytes_ = cuda::paged_attention_workspace_bytes(static_cast<int>(hp.head_dim));
  TROUPE_TRY(cuda_status(cudaMalloc(&m->attn_workspace_, m->attn_workspace_bytes_), m->where("attention workspace")));
  // One small kernel now, so that a GPU this build has no code for fails at start-up, not in a step.
  auto* probe = static_cast<float*>(m->attn_workspace_);
  TROUPE_TRY(cuda_status(cudaMemsetAsync(probe, 0, sizeof(float), m->stream_), m->where("probe")));
  TROUPE_TRY(cuda_status(cuda::silu_mul(probe, probe, 1, probe, m->stream_), m->where("run a kernel")));
  TROUPE_TRY(cuda_status(cudaStreamSynchronize(m->stream_), m->where("run a kernel")));
  spdlog::info("{}: {:.1f} MiB of weights, KV {} blocks x {} tokens ({:.1f} MiB)", m->name_,
               static_cast<double>(m->w_.total_bytes()) / (1 << 20), m->n_blocks_, m->block_size_,
               static_cast<double>(m->kv_bytes()) / (1 << 20));
  return m;
}

cuda_model::~cuda_model() {
  // Called on whichever thread drops the model: make the model's device current for the frees.
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  for (void* p : {weights_mem_, static_cast<void*>(kv_k_), static_cast<void*>(kv_v_), attn_workspace_, act_mem_,
                  matmul_scratch_, static_cast<void*>(meta_dev_)})
    if (p) cudaFree(p);
  if (meta_host_) cudaFreeHost(meta_host_);
  if (blas_) cuda::cublas()->destroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string cuda_model::where(const std::string& what) const { return "cuda:" + std::to_string(device_) + ": " + what; }

status cuda_model::upload_weights() {
  const model_hparams& hp = w_.hp;
  // The CPU's binding (names, shapes, RoPE frequencies), then every tensor it points at goes into
  // one allocation at an aligned offset, and the pointers are rebound to the copies.
  auto bound = bind_llama_tensors(w_);
  TROUPE_TRY(bound);
  const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  struct placed {
    const void* host;
    size_t bytes;
    size_t offset;
  };
  std::vector<placed> items;
  std::map<const void*, size_t> offset_of;  // a tied output shares the embedding's copy
  size_t total = 0;
  auto place = [&](const void* host, size_t bytes) {
    if (!host || offset_of.count(host)) return;
    offset_of[host] = total;
    items.push_back({host, bytes, total});
    total += align_up(bytes);
  };
  const size_t dim_bytes = static_cast<size_t>(hp.dim) * sizeof(float);
  place(bound->tok_embd.data, matrix_bytes(bound->tok_embd));
  place(bound->output.data, matrix_bytes(bound->output));
  place(bound->output_norm, dim_bytes);
  place(bound->inv_freq.data(), bound->inv_freq.size() * sizeof(float));
  for (const llama_layer_tensors& l : bound->layers) {
    place(l.attn_norm, dim_bytes);
    place(l.ffn_norm, dim_bytes);
    for (const cpu::weight_ref* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) place(m->data, matrix_bytes(*m));
    place(l.bq, static_cast<size_t>(q_dim) * sizeof(float));
    place(l.bk, static_cast<size_t>(kv_dim) * sizeof(float));
    place(l.bv, static_cast<size_t>(kv_dim) * sizeof(float));
  }

  TROUPE_TRY(cuda_status(cudaMalloc(&weights_mem_, total),
                         where("weights (" + std::to_string(total >> 20) + " MiB)")));
  auto* base = static_cast<uint8_t*>(weights_mem_);
  for (const placed& p : items)
    TROUPE_TRY(cuda_status(cudaMemcpy(base + p.offset, p.host, p.bytes, cudaMemcpyHostToDevice), where("upload weights")));
  // cudaMemcpy from pageable memory may return before its DMA lands; the model's stream does not wait
  // for the legacy stream, so wait here once.
  TROUPE_TRY(cuda_status(cudaDeviceSynchronize(), where("upload weights")));

  auto dev = [&](const auto* host) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(host)>>;
    return host ? reinterpret_cast<const T*>(base + offset_of.at(host)) : nullptr;
  };
  auto rebind = [&](cpu::weight_ref w) {
    w.data = base + offset_of.at(w.data);
    w.packed = nullptr;
    return w;
  };
  tensors_.tok_embd = rebind(bound->tok_embd);
  tensors_.output = rebind(bound->output);
  tensors_.output_norm = dev(bound->output_norm);
  inv_freq_ = dev(bound->inv_freq.data());
  for (const llama_layer_tensors& l : bound->layers) {
    llama_layer_tensors d;
    d.attn_norm = dev(l.attn_norm);
    d.ffn_norm = dev(l.ffn_norm);
    d.wq = rebind(l.wq); d.wk = rebind(l.wk); d.wv = rebind(l.wv); d.wo = rebind(l.wo);
    d.w_gate = rebind(l.w_gate); d.w_up = rebind(l.w_up); d.w_down = rebind(l.w_down);
    d.bq = dev(l.bq);
    d.bk = dev(l.bk);
    d.bv = dev(l.bv);
    tensors_.layers.push_back(d);
  }
  return {};
}

status cuda_model::allocate_kv(const kv_pool_config& kv) {
  const model_hparams& hp = w_.hp;
  if (kv.block_size <= 0) return make_error(errc::invalid_argument, "kv pool: block_size must be positive");
  block_size_ = kv.block_size;
  const size_t per_block = kv_pool::bytes_per_block(hp.n_layers, hp.n_kv_heads, hp.head_dim, kv.block_size);
  n_blocks_ = kv.n_blocks > 0 ? kv.n_blocks : static_cast<int64_t>(kv.max_bytes / per_block);
  if (n_blocks_ <= 0)
    return make_error(errc::invalid_argument, "kv pool: a budget of " + std::to_string(kv.max_bytes) +
                                                  " bytes holds no block of " + std::to_string(per_block) + " bytes");
  kv_floats_ = static_cast<size_t>(hp.n_layers * n_blocks_ * block_size_ * hp.n_kv_heads * hp.head_dim);
  const std::string what = where("KV cache (" + std::to_string(2 * kv_floats_ * sizeof(float) >> 20) + " MiB)");
  TROUPE_TRY(cuda_status(cudaMalloc(&kv_k_, kv_floats_ * sizeof(float)), what));
  TROUPE_TRY(cuda_status(cudaMalloc(&kv_v_, kv_floats_ * sizeof(float)), what));
  // Zeroed like the CPU pool, so nothing but finite values is ever read.
  TROUPE_TRY(cuda_status(cudaMemsetAsync(kv_k_, 0, kv_floats_ * sizeof(float), stream_), what));
  TROUPE_TRY(cuda_status(cudaMemsetAsync(kv_v_, 0, kv_floats_ * sizeof(float), stream_), what));
  return {};
}

cpu::kv_layer_view cuda_model::kv_layer(int64_t l) const noexcept {
  const size_t per_layer = kv_floats_ / static_cast<size_t>(w_.hp.n_layers);
  return cpu::kv_layer_view{kv_k_ + l * per_layer, kv_v_ + l * per_layer, block_size_,
                            static_cast<int>(w_.hp.n_kv_heads), static_cast<int>(w_.hp.head_dim)};
}


status cuda_model::reserve(int64_t n_tokens, int64_t n_rows, size_t n_meta) {
  const model_hparams& hp = w_.hp;
  if (n_tokens > cap_tokens_ || n_rows > cap_rows_) {
    // Round up, so that batches growing a token at a time do not reallocate every step.
    const int64_t tokens = std::max(cap_tokens_, (n_tokens + 63) / 64 * 64);
    const int64_t rows = std::max(cap_rows_, (n_rows + 15) / 16 * 16);
    const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
    float** bufs[] = {&x_, &xn_, &tmp_, &q_, &attn_, &k_, &v_, &gate_, &up_, &last_, &logits_};
    const int64_t sizes[] = {tokens * hp.dim, tokens * hp.dim, tokens * hp.dim, tokens * q_dim, tokens * q_dim,
                             tokens * kv_dim, tokens * kv_dim, tokens * hp.ffn_dim, tokens * hp.ffn_dim,
                             rows * hp.dim,   rows * hp.n_vocab};
    size_t total = 0;
    for (int64_t s : sizes) total += align_up(static_cast<size_t>(s) * sizeof(float));
    size_t scratch = cuda::matmul_scratch_bytes(tensors_.output, rows);
    for (const llama_layer_tensors& l : tensors_.layers)
      for (const cpu::weight_ref* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
        scratch = std::max(scratch, cuda::matmul_scratch_bytes(*w, tokens));
    TROUPE_TRY(cuda_status(cudaStreamSynchronize(stream_), where("step")));
    if (act_mem_) cudaFree(act_mem_);
    if (matmul_scratch_) cudaFree(matmul_scratch_);
    act_mem_ = matmul_scratch_ = nullptr;
    cap_tokens_ = cap_rows_ = 0;
    const std::string what = where("activations for " + std::to_string(tokens) + " tokens");
    TROUPE_TRY(cuda_status(cudaMalloc(&act_mem_, total), what));
    if (scratch > 0) TROUPE_TRY(cuda_status(cudaMalloc(&matmul_scratch_, scratch), what));
    matmul_scratch_bytes_ = scratch;
    auto* p = static_cast<uint8_t*>(act_mem_);
    for (size_t i = 0; i < std::size(bufs); ++i) {
      *bufs[i] = reinterpret_cast<float*>(p);
      p += align_up(static_cast<size_t>(sizes[i]) * sizeof(float));
    }
    cap_tokens_ = tokens;
    cap_rows_ = rows;
  }
  if (n_meta > cap_meta_) {
    const size_t n = std::max(n_meta, 2 * cap_meta_);
    TROUPE_TRY(cuda_status(cudaStreamSynchronize(stream_), where("step")));
    if (meta_dev_) cudaFree(meta_dev_);
    if (meta_host_) cudaFreeHost(meta_host_);
    meta_dev_ = meta_host_ = nullptr;
    cap_meta_ = 0;
    TROUPE_TRY(cuda_status(cudaMalloc(&meta_dev_, n * sizeof(int32_t)), where("batch metadata")));
    TROUPE_TRY(cuda_status(cudaHostAlloc(&meta_host_, n * sizeof(int32_t), cudaHostAllocDefault), where("batch metadata")));
    cap_meta_ = n;
  }
  return {};
}

status cuda_model::forward(const forward_batch& batch, std::span<float> logits) {
  const model_hparams& hp = w_.hp;
  const int64_t n_tokens = batch.n_tokens(), n_logits = batch.n_logits();
  if (n_tokens == 0) return {};
  if (logits.size() < static_cast<size_t>(n_logits * hp.n_vocab))
    return make_error(errc::invalid_argument, "forward: logits buffer too small");
  TROUPE_TRY(check_batch(batch, hp, n_blocks_, block_size_));
  // The shard may call from any thread; the current device is per thread.
  TROUPE_TRY(cuda_status(cudaSetDevice(device_), where("select the device")));

  // Metadata, one int32 array: tokens, positions, table offsets (per token), the rows whose logits
  // are wanted, then every step's block table.
  int64_t n_rows = 0;
  size_t n_table = 0;
  for (const auto& s : batch.seqs) {
    n_rows += s.want_logits && !s.tokens.empty() ? 1 : 0;
    n_table += s.block_table.size();
  }
  const size_t n_meta = static_cast<size_t>(3 * n_tokens + n_rows) + n_table;
  TROUPE_TRY(reserve(n_tokens, std::max<int64_t>(n_rows, 1), n_meta));
  // The pinned metadata buffer is rewritten below: the previous step (which may have failed midway)
  // and any block copies must be done with it.
  TROUPE_TRY(cuda_status(cudaStreamSynchronize(stream_), where("step")));
  int32_t* tokens = meta_host_;
  int32_t* pos = tokens + n_tokens;
  int32_t* offset = pos + n_tokens;
  int32_t* rows = offset + n_tokens;
  int32_t* tables = rows + n_rows;
  int64_t i = 0, r = 0;
  int32_t table_at = 0, max_ctx = 0;
  for (const auto& s : batch.seqs) {
    for (size_t j = 0; j < s.tokens.size(); ++j, ++i) {
      tokens[i] = s.tokens[j];
      pos[i] = static_cast<int32_t>(s.start_pos + static_cast<int64_t>(j));
      offset[i] = table_at;
      max_ctx = std::max(max_ctx, pos[i] + 1);
    }
    if (s.want_logits && !s.tokens.empty()) rows[r++] = static_cast<int32_t>(i - 1);
    std::copy(s.block_table.begin(), s.block_table.end(), tables + table_at);
    table_at += static_cast<int32_t>(s.block_table.size());
  }
  TROUPE_TRY(cuda_status(cudaMemcpyAsync(meta_dev_, meta_host_, n_meta * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
                         where("copy the batch")));
  const int32_t* d_tokens = meta_dev_;
  const int32_t* d_rows = meta_dev_ + 3 * n_tokens;
  const cuda::token_pages pages{meta_dev_ + n_tokens, meta_dev_ + 2 * n_tokens, d_rows + n_rows, n_tokens};

  const cuda::matmul_context mm{blas_, matmul_scratch_, matmul_scratch_bytes_};
  const std::string step = where("step");
  auto ok = [&](cuda::dev_status s) { return cuda_status(s, step); };
  const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  const int n_heads = static_cast<int>(hp.n_heads);

  TROUPE_TRY(ok(cuda::get_rows(tensors_.tok_embd, d_tokens, n_tokens, x_, stream_)));
  for (int64_t l = 0; l < hp.n_layers; ++l) {
    const llama_layer_tensors& ly = tensors_.layers[static_cast<size_t>(l)];
    const cpu::kv_layer_view kvl = kv_layer(l);

    // Attention block.
    TROUPE_TRY(ok(cuda::rms_norm(x_, ly.attn_norm, n_tokens, hp.dim, hp.norm_eps, xn_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.wq, xn_, n_tokens, q_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.wk, xn_, n_tokens, k_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.wv, xn_, n_tokens, v_, stream_)));
    if (ly.bq) {  // Qwen2's projection biases
      TROUPE_TRY(ok(cuda::add_bias(q_, ly.bq, n_tokens, q_dim, stream_)));
      TROUPE_TRY(ok(cuda::add_bias(k_, ly.bk, n_tokens, kv_dim, stream_)));
      TROUPE_TRY(ok(cuda::add_bias(v_, ly.bv, n_tokens, kv_dim, stream_)));
    }
    TROUPE_TRY(ok(cuda::rope(q_, n_tokens, hp.n_heads, hp.head_dim, pages.pos, inv_freq_, hp.rope, stream_)));
    TROUPE_TRY(ok(cuda::rope(k_, n_tokens, hp.n_kv_heads, hp.head_dim, pages.pos, inv_freq_, hp.rope, stream_)));
    TROUPE_TRY(ok(cuda::kv_write(kvl, pages, k_, v_, stream_)));
    TROUPE_TRY(ok(cuda::paged_attention(kvl, pages, q_, attn_, n_heads, scale, max_ctx, attn_workspace_,
                                        attn_workspace_bytes_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.wo, attn_, n_tokens, tmp_, stream_)));
    TROUPE_TRY(ok(cuda::add_inplace(x_, tmp_, n_tokens * hp.dim, stream_)));

    // Feed-forward block (SwiGLU).
    TROUPE_TRY(ok(cuda::rms_norm(x_, ly.ffn_norm, n_tokens, hp.dim, hp.norm_eps, xn_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.w_gate, xn_, n_tokens, gate_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.w_up, xn_, n_tokens, up_, stream_)));
    TROUPE_TRY(ok(cuda::silu_mul(gate_, up_, n_tokens * hp.ffn_dim, gate_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, ly.w_down, gate_, n_tokens, tmp_, stream_)));
    TROUPE_TRY(ok(cuda::add_inplace(x_, tmp_, n_tokens * hp.dim, stream_)));
  }

  // Logits only for the last token of each step that wants them.
  if (n_rows > 0) {
    const cpu::weight_ref hidden{dtype::f32, n_tokens, hp.dim, x_};
    TROUPE_TRY(ok(cuda::get_rows(hidden, d_rows, n_rows, last_, stream_)));
    TROUPE_TRY(ok(cuda::rms_norm(last_, tensors_.output_norm, n_rows, hp.dim, hp.norm_eps, last_, stream_)));
    TROUPE_TRY(ok(cuda::matmul(mm, tensors_.output, last_, n_rows, logits_, stream_)));
    TROUPE_TRY(cuda_status(cudaMemcpyAsync(logits.data(), logits_, static_cast<size_t>(n_rows * hp.n_vocab) * sizeof(float),
                                           cudaMemcpyDeviceToHost, stream_),
                           where("copy the logits")));
  }
  // Errors of the kernels themselves (an illegal address, ...) surface here.
  return cuda_status(cudaStreamSynchronize(stream_), step);
}

status cuda_model::copy_block(int32_t src, int32_t dst) {
  TROUPE_TRY(check_block_copy(src, dst, n_blocks_));
  if (src == dst) return {};
  TROUPE_TRY(cuda_status(cudaSetDevice(device_), where("select the device")));
  // Queued on the model's stream, so the next forward step sees the copies.
  const size_t per_layer = kv_floats_ / static_cast<size_t>(w_.hp.n_layers) * sizeof(float);
  const size_t per_block = per_layer / static_cast<size_t>(n_blocks_);
  for (float* cache : {kv_k_, kv_v_}) {
    auto* base = reinterpret_cast<uint8_t*>(cache);
    for (int64_t l = 0; l < w_.hp.n_layers; ++l) {
      uint8_t* layer_base = base + static_cast<size_t>(l) * per_layer;
      TROUPE_TRY(cuda_status(cudaMemcpyAsync(layer_base + static_cast<size_t>(dst) * per_block,
                                             layer_base + static_cast<size_t>(src) * per_block, per_block,
                                             cudaMemcpyDeviceToDevice, stream_),
                             where("copy a KV block")));
    }
  }
  return {};
}

}  // namespace troupe
