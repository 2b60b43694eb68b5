#include "runtime/model/llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

namespace troupe {
namespace {

expected<cpu::weight_ref> matrix(const model_weights& w, const std::string& name, int64_t rows, int64_t cols) {
  const tensor_ref* t = w.find(name);
  if (!t) return make_error(errc::not_found, "model is missing tensor '" + name + "'");
  if (t->shape.size() != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return make_error(errc::shape_mismatch, "tensor '" + name + "' should be " + std::to_string(rows) + "x" +
                                                std::to_string(cols));
  if (cols % block_elems(t->type) != 0)
    return make_error(errc::shape_mismatch, "tensor '" + name + "': row length " + std::to_string(cols) +
                                                " is not a multiple of the " + std::string(to_string(t->type)) +
                                                " block");
  return cpu::weight_ref{t->type, rows, cols, t->data};
}

expected<const float*> vector_f32(const model_weights& w, const std::string& name, int64_t n, bool optional = false) {
  const tensor_ref* t = w.find(name);
  if (!t) {
    if (optional) return static_cast<const float*>(nullptr);
    return make_error(errc::not_found, "model is missing tensor '" + name + "'");
  }
  if (t->type != dtype::f32)
    return make_error(errc::unsupported_type, "tensor '" + name + "' must be f32, is " + std::string(to_string(t->type)));
  if (t->nbytes != static_cast<size_t>(n) * 4)
    return make_error(errc::shape_mismatch, "tensor '" + name + "' should have " + std::to_string(n) + " elements");
  return static_cast<const float*>(t->data);
}

/// Asks the kernel to reclaim the whole pages inside [p, p + n): clean pages of the mapped file are
/// dropped and fault back in if read. MADV_PAGEOUT (Linux 5.4) never discards data, so it is also
/// safe for weights held in ordinary memory. Best effort: an error only means they stay resident.
void release_pages(const void* p, size_t n) {
#if defined(MADV_PAGEOUT)
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace

status check_batch(const forward_batch& batch, const model_hparams& hp, int64_t n_blocks, int block_size) {
  for (const auto& s : batch.seqs) {
    const int64_t end = s.start_pos + static_cast<int64_t>(s.tokens.size());
    if (s.start_pos < 0 || end > hp.context_length)
      return make_error(errc::context_overflow, "forward: positions up to " + std::to_string(end) +
                                                    " exceed the context length " + std::to_string(hp.context_length));
    if (static_cast<int64_t>(s.block_table.size()) * block_size < end)
      return make_error(errc::invalid_argument, "forward: block table does not cover the positions");
    for (int32_t b : s.block_table)
      if (b < 0 || b >= n_blocks) return make_error(errc::invalid_argument, "forward: block id out of range");
    for (int32_t t : s.tokens)
      if (t < 0 || t >= hp.n_vocab)
        return make_error(errc::invalid_argument, "forward: token id " + std::to_string(t) + " outside the vocabulary");
  }
  return {};
}

std::vector<float> rope_inv_freq(const model_hparams& hp) {
  const int64_t half = hp.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(hp.rope_theta), -2.0 * static_cast<double>(i) / hp.head_dim);
    if (hp.scaling.llama3) {
      const auto& s = hp.scaling;
      const double low_wavelen = s.original_context / s.low_freq_factor;
      const double high_wavelen = s.original_context / s.high_freq_factor;
      const double wavelen = 2.0 * M_PI / freq;
      if (wavelen > low_wavelen) {
        freq /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        freq = (1.0 - smooth) * freq / s.factor + smooth * freq;
      }
    }
    f[static_cast<size_t>(i)] = static_cast<float>(freq);
  }
  return f;
}

expected<llama_tensors> bind_llama_tensors(const model_weights& w) {
  const model_hparams& hp = w.hp;
  if (hp.n_heads <= 0 || hp.n_kv_heads <= 0 || hp.n_heads % hp.n_kv_heads != 0 || hp.head_dim % 2 != 0)
    return make_error(errc::bad_format, "model: heads (" + std::to_string(hp.n_heads) + ") must be a positive multiple of kv heads (" +
                                            std::to_string(hp.n_kv_heads) + ") and head_dim even");
  const int64_t q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  llama_tensors t;
  auto embd = matrix(w, "token_embd.weight", hp.n_vocab, hp.dim);
  TROUPE_TRY(embd);
  t.tok_embd = *embd;
  if (hp.tied_embeddings) {
    t.output = t.tok_embd;
  } else {
    auto out = matrix(w, "output.weight", hp.n_vocab, hp.dim);
    TROUPE_TRY(out);
    t.output = *out;
  }
  auto onorm = vector_f32(w, "output_norm.weight", hp.dim);
  TROUPE_TRY(onorm);
  t.output_norm = *onorm;

  for (int64_t l = 0; l < hp.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    llama_layer_tensors ly;
    auto an = vector_f32(w, p + "attn_norm.weight", hp.dim);
    TROUPE_TRY(an);
    auto fn = vector_f32(w, p + "ffn_norm.weight", hp.dim);
    TROUPE_TRY(fn);
    ly.attn_norm = *an;
    ly.ffn_norm = *fn;
    auto wq = matrix(w, p + "attn_q.weight", q_dim, hp.dim);
    TROUPE_TRY(wq);
    auto wk = matrix(w, p + "attn_k.weight", kv_dim, hp.dim);
    TROUPE_TRY(wk);
    auto wv = matrix(w, p + "attn_v.weight", kv_dim, hp.dim);
    TROUPE_TRY(wv);
    auto wo = matrix(w, p + "attn_output.weight", hp.dim, q_dim);
    TROUPE_TRY(wo);
    auto wg = matrix(w, p + "ffn_gate.weight", hp.ffn_dim, hp.dim);
    TROUPE_TRY(wg);
    auto wu = matrix(w, p + "ffn_up.weight", hp.ffn_dim, hp.dim);
    TROUPE_TRY(wu);
    auto wd = matrix(w, p + "ffn_down.weight", hp.dim, hp.ffn_dim);
    TROUPE_TRY(wd);
    ly.wq = *wq; ly.wk = *wk; ly.wv = *wv; ly.wo = *wo;
    ly.w_gate = *wg; ly.w_up = *wu; ly.w_down = *wd;
    if (hp.qkv_bias) {
      auto bq = vector_f32(w, p + "attn_q.bias", q_dim);
      TROUPE_TRY(bq);
      auto bk = vector_f32(w, p + "attn_k.bias", kv_dim);
      TROUPE_TRY(bk);
      auto bv = vector_f32(w, p + "attn_v.bias", kv_dim);
      TROUPE_TRY(bv);
      ly.bq = *bq; ly.bk = *bk; ly.bv = *bv;
    }
    t.layers.push_back(ly);
  }
  t.inv_freq = rope_inv_freq(hp);
  if (hp.scaling.freq_factors) {  // Llama 3.1 GGUF: per-frequency divisors stored as a tensor
    auto factors = vector_f32(w, "rope_freqs.weight", hp.head_dim / 2);
    TROUPE_TRY(factors);
    for (size_t i = 0; i < t.inv_freq.size(); ++i) t.inv_freq[i] /= (*factors)[i];
  }
  return t;
}

size_t llama_tensors::weight_bytes_per_token() const noexcept {
  auto bytes = [](const cpu::weight_ref& w) { return row_bytes(w.type, w.cols) * static_cast<size_t>(w.rows); };
  size_t total = bytes(output) + row_bytes(tok_embd.type, tok_embd.cols);
  for (const auto& l : layers)
    total += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w_gate) + bytes(l.w_up) + bytes(l.w_down);
  return total;
}

expected<std::unique_ptr<llama_model>> llama_model::create(model_weights weights, const model_options& opts) {
  std::unique_ptr<llama_model> m(new llama_model());
  m->w_ = std::move(weights);
  auto bound = bind_llama_tensors(m->w_);
  TROUPE_TRY(bound);
  m->t_ = std::move(*bound);
  const parallel_context& par = opts.parallel;
  TROUPE_TRY(par.validate());
  for (const auto* c : {par.tp.get(), par.pp.get()})
    if (c && c->buffers() != buffer_space::host)
      return make_error(errc::invalid_argument, "parallel layout (" + par.layout.to_string() +
                                                    "): the CPU model needs communicators of host buffers");
  int block = 1;  // the column slices of every layer's wo and w_down must be whole blocks
  for (const auto& ly : m->t_.layers) block = std::max({block, block_elems(ly.wo.type), block_elems(ly.w_down.type)});
  TROUPE_TRY(par.layout.validate(m->w_.hp, block));
  m->par_ = par;
  m->shard_ = par.layout.shape(m->w_.hp);
  if (!par.layout.single()) m->slice_tensors();
  if (opts.repack) {
    auto copy = [&](cpu::weight_ref& w) {
      const size_t bytes = row_bytes(w.type, w.cols) * static_cast<size_t>(w.rows);
      const void* source = w.data;
      if (cpu::packed_weight p = cpu::pack_weight(w); p.data) {
        w.packed = p.data.get();  // data keeps pointing at the rows (get_row and the reference read them)
        m->packed_.push_back(std::move(p));
      } else if (!m->owns_copy(w.data)) {  // no packed layout for the type or CPU: the same layout
        cpu::huge_buffer b = cpu::huge_buffer::copy_of(w.data, bytes);
        if (!b) return;  // best effort: the matrix stays in the file
        w.data = b.get();
        m->copies_.push_back(std::move(b));
      } else {
        return;
      }
      // The kernels read the copy from now on: let the kernel drop the file's pages rather than
      // hold the matrix twice (they fault back in from the file if anything reads them).
      release_pages(source, bytes);
    };
    copy(m->t_.output);
    for (auto& ly : m->t_.layers)
      for (cpu::weight_ref* w : {&ly.wq, &ly.wk, &ly.wv, &ly.wo, &ly.w_gate, &ly.w_up, &ly.w_down}) copy(*w);
  }
  int threads = opts.threads > 0 ? opts.threads : static_cast<int>(std::thread::hardware_concurrency());
  m->pool_ = std::make_unique<cpu::thread_pool>(threads > 0 ? threads : 1);
  return m;
}

size_t llama_model::copied_weight_bytes() const noexcept {
  size_t n = 0;
  for (const auto& p : packed_) n += p.data.size();
  for (const auto& b : copies_) n += b.size();
  return n;
}

bool llama_model::owns_copy(const void* p) const noexcept {
  return std::any_of(copies_.begin(), copies_.end(), [p](const cpu::huge_buffer& b) { return b.holds(p); });
}

void llama_model::slice_tensors() {
  const int64_t head_dim = w_.hp.head_dim, rank = par_.layout.tp_rank;
  const int64_t q_dim = shard_.n_heads * head_dim, kv_dim = shard_.n_kv_heads * head_dim, ffn = shard_.ffn_dim;
  // Rows [first, first + n) of a row-major matrix are a pointer into it.
  auto rows = [](cpu::weight_ref& w, int64_t first, int64_t n) {
    w.data = static_cast<const uint8_t*>(w.data) + row_bytes(w.type, w.cols) * static_cast<size_t>(first);
    w.rows = n;
  };
  // Columns [first, first + n) are a sub-range of every row: copied (whole blocks, checked by validate).
  auto cols = [&](cpu::weight_ref& w, int64_t first, int64_t n) {
    if (n == w.cols) return;
    const size_t src_stride = row_bytes(w.type, w.cols), stride = row_bytes(w.type, n);
    const auto* src = static_cast<const uint8_t*>(w.data) + row_bytes(w.type, first);
    auto copy = cpu::huge_buffer::allocate(stride * static_cast<size_t>(w.rows));
    if (!copy) throw std::bad_alloc();
    for (int64_t r = 0; r < w.rows; ++r)
      std::memcpy(copy.get() + stride * static_cast<size_t>(r), src + src_stride * static_cast<size_t>(r), stride);
    // The shard reads its copy from now on: the file's pages may go (as for repacked weights).
    release_pages(w.data, src_stride * static_cast<size_t>(w.rows));
    w = cpu::weight_ref{w.type, w.rows, n, copy.get()};
    copies_.push_back(std::move(copy));
  };
  const auto first = t_.layers.begin() + shard_.first_layer;
  t_.layers = std::vector<llama_layer_tensors>(first, first + shard_.n_layers);
  for (auto& ly : t_.layers) {
    rows(ly.wq, rank * q_dim, q_dim);
    rows(ly.wk, rank * kv_dim, kv_dim);
    rows(ly.wv, rank * kv_dim, kv_dim);
    rows(ly.w_gate, rank * ffn, ffn);
    rows(ly.w_up, rank * ffn, ffn);
    cols(ly.wo, rank * q_dim, q_dim);
    cols(ly.w_down, rank * ffn, ffn);
    if (ly.bq) {
      ly.bq += rank * q_dim;
      ly.bk += rank * kv_dim;
      ly.bv += rank * kv_dim;
    }
  }
  // Other shards neither embed nor project to the vocabulary: they hold no such weights.
  if (!par_.layout.first_stage()) t_.tok_embd = {};
  if (!par_.layout.samples()) {
    t_.output = {};
    t_.output_norm = nullptr;
  }
}

unexpected llama_model::comm_error(const error& e, const char* what) const {
  return make_error(e.code(), "forward (" + par_.layout.to_string() + "): " + what + ": " + e.message());
}

void llama_model::ensure_scratch(int64_t n_tokens, int64_t n_logits) {
  const model_hparams& hp = w_.hp;
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  };
  const int64_t q_dim = shard_.n_heads * hp.head_dim, kv_dim = shard_.n_kv_heads * hp.head_dim;
  grow(x_, n_tokens * hp.dim);
  grow(xn_, n_tokens * hp.dim);
  grow(q_, n_tokens * q_dim);
  grow(k_, n_tokens * kv_dim);
  grow(v_, n_tokens * kv_dim);
  grow(attn_, n_tokens * q_dim);
  grow(gate_, n_tokens * shard_.ffn_dim);
  grow(up_, n_tokens * shard_.ffn_dim);
  grow(tmp_, n_tokens * hp.dim);
  grow(last_, n_logits * hp.dim);
  if (queries_.size() < static_cast<size_t>(n_tokens)) queries_.resize(static_cast<size_t>(n_tokens));
}

status llama_model::forward(const forward_batch& batch, kv_pool& kv, std::span<float> logits) {
  const model_hparams& hp = w_.hp;
  const int64_t n_tokens = batch.n_tokens(), n_logits = batch.n_logits();
  if (n_tokens == 0) return {};
  const parallel_layout& layout = par_.layout;
  if (layout.samples() && logits.size() < static_cast<size_t>(n_logits * hp.n_vocab))
    return make_error(errc::invalid_argument, "forward: logits buffer too small");
  const int64_t n_heads = shard_.n_heads, n_kv_heads = shard_.n_kv_heads, ffn_dim = shard_.ffn_dim;
  const int64_t q_dim = n_heads * hp.head_dim, kv_dim = n_kv_heads * hp.head_dim;
  const size_t x_floats = static_cast<size_t>(n_tokens * hp.dim);

  // Validate every step before touching the cache, so a bad step fails alone and cleanly; and before
  // any communication, so every shard of a replica refuses the same batches and none is left waiting.
  TROUPE_TRY(check_batch(batch, hp, kv.n_blocks(), kv.block_size()));
  ensure_scratch(n_tokens, layout.samples() ? n_logits : 0);
  cpu::thread_pool& pool = *pool_;

  int64_t i = 0;
  if (layout.first_stage()) {
    for (const auto& s : batch.seqs)
      for (size_t j = 0; j < s.tokens.size(); ++j, ++i) cpu::get_row(t_.tok_embd, s.tokens[j], x_.data() + i * hp.dim);
  } else if (auto st = par_.pp->recv(x_.data(), x_floats, layout.pp_stage - 1); !st) {
    return comm_error(st.error(), "receiving the previous stage's activations");
  }

  const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  for (size_t l = 0; l < t_.layers.size(); ++l) {
    const llama_layer_tensors& ly = t_.layers[l];
    const cpu::kv_layer_view kvl = kv.layer(static_cast<int64_t>(l));

    // Attention block.
    cpu::rms_norm(pool, x_.data(), ly.attn_norm, n_tokens, hp.dim, hp.norm_eps, xn_.data());
    cpu::matmul(pool, ly.wq, xn_.data(), n_tokens, q_.data());
    cpu::matmul(pool, ly.wk, xn_.data(), n_tokens, k_.data());
    cpu::matmul(pool, ly.wv, xn_.data(), n_tokens, v_.data());
    if (ly.bq) {  // Qwen2's projection biases
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t e = 0; e < q_dim; ++e) q_[t * q_dim + e] += ly.bq[e];
        for (int64_t e = 0; e < kv_dim; ++e) k_[t * kv_dim + e] += ly.bk[e];
        for (int64_t e = 0; e < kv_dim; ++e) v_[t * kv_dim + e] += ly.bv[e];
      }
    }
    i = 0;
    for (const auto& s : batch.seqs) {
      for (size_t j = 0; j < s.tokens.size(); ++j, ++i) {
        const int64_t pos = s.start_pos + static_cast<int64_t>(j);
        cpu::rope(q_.data() + i * q_dim, n_heads, hp.head_dim, pos, t_.inv_freq.data(), hp.rope);
        cpu::rope(k_.data() + i * kv_dim, n_kv_heads, hp.head_dim, pos, t_.inv_freq.data(), hp.rope);
        cpu::kv_write(kvl, s.block_table.data(), pos, k_.data() + i * kv_dim, v_.data() + i * kv_dim);
        queries_[static_cast<size_t>(i)] =
            cpu::attn_query{q_.data() + i * q_dim, attn_.data() + i * q_dim, s.block_table.data(),
                            static_cast<int32_t>(pos + 1)};
      }
    }
    cpu::paged_attention(pool, kvl, queries_.data(), n_tokens, static_cast<int>(n_heads), scale);
    cpu::matmul(pool, ly.wo, attn_.data(), n_tokens, tmp_.data());
    // Each tp rank has its heads' share of the projection; their sum is the whole.
    if (par_.tp)
      if (auto st = par_.tp->all_reduce_sum(tmp_.data(), x_floats); !st)
        return comm_error(st.error(), "all-reducing the attention output");
    cpu::add_inplace(pool, x_.data(), tmp_.data(), n_tokens * hp.dim);

    // Feed-forward block (SwiGLU).
    cpu::rms_norm(pool, x_.data(), ly.ffn_norm, n_tokens, hp.dim, hp.norm_eps, xn_.data());
    cpu::matmul(pool, ly.w_gate, xn_.data(), n_tokens, gate_.data());
    cpu::matmul(pool, ly.w_up, xn_.data(), n_tokens, up_.data());
    cpu::silu_mul(pool, gate_.data(), up_.data(), n_tokens * ffn_dim, gate_.data());
    cpu::matmul(pool, ly.w_down, gate_.data(), n_tokens, tmp_.data());
    if (par_.tp)
      if (auto st = par_.tp->all_reduce_sum(tmp_.data(), x_floats); !st)
        return comm_error(st.error(), "all-reducing the feed-forward output");
    cpu::add_inplace(pool, x_.data(), tmp_.data(), n_tokens * hp.dim);
  }

  // After the all-reduces every tp rank holds the whole activations: each passes its own copy to
  // its twin in the next stage.
  if (!layout.last_stage()) {
    if (auto st = par_.pp->send(x_.data(), x_floats, layout.pp_stage + 1); !st)
      return comm_error(st.error(), "sending the activations to the next stage");
    return {};
  }
  if (!layout.samples()) return {};

  // Logits only for the last token of each step that wants them.
  i = 0;
  int64_t o = 0;
  for (const auto& s : batch.seqs) {
    i += static_cast<int64_t>(s.tokens.size());
    if (s.want_logits && !s.tokens.empty()) {
      std::copy_n(x_.data() + (i - 1) * hp.dim, hp.dim, last_.data() + o * hp.dim);
      ++o;
    }
  }
  cpu::rms_norm(pool, last_.data(), t_.output_norm, n_logits, hp.dim, hp.norm_eps, last_.data());
  cpu::matmul(pool, t_.output, last_.data(), n_logits, logits.data());
  return {};
}

}  // namespace troupe
