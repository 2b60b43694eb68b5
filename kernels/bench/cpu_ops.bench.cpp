// Google Benchmark for the fast CPU kernels at the shapes of small LLMs (TinyLlama-1.1B: 2048 wide,
// 5632 FFN, 32000 vocab; a 768-wide vocab projection). Reports weight bytes/s for matmul, which for
// single-token decode should approach the machine's read bandwidth (printed first, and as the
// counter "of_bw" = fraction of it).
//
//   bench_kernels --benchmark_filter=matmul --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "kernels/cpu/membw.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/quant.hpp"

namespace {

using namespace troupe;
using namespace troupe::cpu;

// Threads of the pool: 2 unless TROUPE_BENCH_THREADS says otherwise.
int bench_threads() {
  static const int n = [] {
    const char* env = std::getenv("TROUPE_BENCH_THREADS");
    return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 2;
  }();
  return n;
}

thread_pool& pool() {
  static thread_pool p(bench_threads());
  return p;
}

double read_bandwidth_gbs() {
  static const double gbs = [] {
    const double v = measure_read_bandwidth_gbs(pool(), size_t{1} << 30);
    std::printf("measured read bandwidth with %d threads: %.1f GB/s\n", bench_threads(), v);
    return v;
  }();
  return gbs;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Enough copies of the weight that their total exceeds the last-level cache many times over: in a
// real decode step every matmul's weights come from memory, not from the 32 MiB L3. In huge-page
// memory, as the runtime holds them (huge_buffer).
struct weight_set {
  std::vector<huge_buffer> copies;
  std::vector<packed_weight> packed;  ///< per copy, when asked for and the type has a packed layout
  size_t bytes = 0;
};

weight_set make_weights(dtype t, int64_t rows, int64_t cols, bool pack) {
  weight_set s;
  const size_t rb = row_bytes(t, cols);
  s.bytes = rb * static_cast<size_t>(rows);
  const size_t n_copies = std::max<size_t>(2, (size_t{256} << 20) / s.bytes);
  const auto row = random_floats(static_cast<size_t>(cols), 1);
  std::vector<uint8_t> qrow(rb);
  quantize_row(t, row.data(), qrow.data(), cols);
  for (size_t c = 0; c < n_copies; ++c) {
    s.copies.push_back(huge_buffer::allocate(s.bytes));
    if (!s.copies.back()) throw std::bad_alloc();
    // Random-ish content per row (a rotated quantized row) without quantizing every row.
    for (int64_t r = 0; r < rows; ++r) {
      uint8_t* dst = s.copies.back().get() + static_cast<size_t>(r) * rb;
      const size_t shift = static_cast<size_t>(r * 7 + c) % rb;
      std::memcpy(dst, qrow.data() + shift, rb - shift);
      std::memcpy(dst + (rb - shift), qrow.data(), shift);
      if (t == dtype::q8_0 || t == dtype::q4_0) {
        // Keep every block's scale a sane fp16 (the rotation may have moved bytes into it).
        const size_t bb = block_bytes(t);
        for (size_t b = 0; b < rb / bb; ++b) {
          const uint16_t d = fp32_to_fp16(0.01f);
          std::memcpy(dst + b * bb, &d, 2);
        }
      }
    }
    if (pack) s.packed.push_back(pack_weight(weight_ref{t, rows, cols, s.copies.back().get()}));
  }
  return s;
}

void bm_matmul(benchmark::State& state, dtype t, bool pack = false) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  const double bw = read_bandwidth_gbs();
  const weight_set ws = make_weights(t, rows, cols, pack);
  const auto x = random_floats(static_cast<size_t>(n_tokens * cols), 2);
  std::vector<float> y(static_cast<size_t>(n_tokens * rows));
  size_t i = 0;
  for (auto _ : state) {
    const weight_ref w{t, rows, cols, ws.copies[i].get(), pack ? ws.packed[i].data.get() : nullptr};
    i = (i + 1) % ws.copies.size();
    matmul(pool(), w, x.data(), n_tokens, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const auto iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(iters * static_cast<double>(ws.bytes)));
  state.counters["tok/s"] = benchmark::Counter(iters * static_cast<double>(n_tokens), benchmark::Counter::kIsRate);
  // Weight bytes per second as a fraction of the measured read bandwidth.
  state.counters["of_bw"] = benchmark::Counter(iters * static_cast<double>(ws.bytes) / (bw * 1e9),
                                               benchmark::Counter::kIsRate);
}

void matmul_shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 768}})
    for (int64_t n : {1, 16}) b->Args({rows, cols, n});
  b->ArgNames({"rows", "cols", "tokens"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(bm_matmul, q8_0, dtype::q8_0)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, q8_0_packed, dtype::q8_0, true)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, q4_0, dtype::q4_0)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, q4_0_packed, dtype::q4_0, true)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, f16, dtype::f16)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, bf16, dtype::bf16)->Apply(matmul_shapes);
BENCHMARK_CAPTURE(bm_matmul, f32, dtype::f32)->Apply(matmul_shapes);

// Batched decode scaling: tokens/s against the batch size for one FFN-sized matrix.
void batch_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64}) b->Args({5632, 2048, n});
  b->ArgNames({"rows", "cols", "tokens"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK_CAPTURE(bm_matmul, q8_0_batch, dtype::q8_0)->Apply(batch_shapes);
BENCHMARK_CAPTURE(bm_matmul, q8_0_packed_batch, dtype::q8_0, true)->Apply(batch_shapes);
BENCHMARK_CAPTURE(bm_matmul, q4_0_batch, dtype::q4_0)->Apply(batch_shapes);
BENCHMARK_CAPTURE(bm_matmul, q4_0_packed_batch, dtype::q4_0, true)->Apply(batch_shapes);
BENCHMARK_CAPTURE(bm_matmul, f16_batch, dtype::f16)->Apply(batch_shapes);

// The cost of one empty parallel job: the floor under every small op of a decode step.
void bm_pool_job(benchmark::State& state) {
  for (auto _ : state) pool().run([](int, int) {});
}
BENCHMARK(bm_pool_job)->UseRealTime();

void bm_rms_norm(benchmark::State& state) {
  const int64_t n_rows = state.range(0), dim = 2048;
  const auto x = random_floats(static_cast<size_t>(n_rows * dim), 3);
  const auto w = random_floats(static_cast<size_t>(dim), 4);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    rms_norm(pool(), x.data(), w.data(), n_rows, dim, 1e-5f, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n_rows * dim * 8);
}
BENCHMARK(bm_rms_norm)->Arg(1)->Arg(16)->Arg(256)->UseRealTime();

void bm_silu_mul(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto g = random_floats(static_cast<size_t>(n), 5), u = random_floats(static_cast<size_t>(n), 6);
  std::vector<float> y(g.size());
  for (auto _ : state) {
    silu_mul(pool(), g.data(), u.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * 12);
}
BENCHMARK(bm_silu_mul)->Arg(5632)->Arg(16 * 5632)->UseRealTime();

// Decode attention: n_queries sequences of n_ctx positions each, 32 heads / 4 KV heads of 64.
void bm_attention(benchmark::State& state) {
  const int64_t n_queries = state.range(0);
  const int32_t n_ctx = static_cast<int32_t>(state.range(1));
  const int n_heads = 32, n_kv = 4, hd = 64, bs = 16;
  const int32_t blocks_per_seq = (n_ctx + bs - 1) / bs;
  const int64_t n_blocks = n_queries * blocks_per_seq;
  auto k = random_floats(static_cast<size_t>(n_blocks * bs * n_kv * hd), 7);
  auto v = random_floats(k.size(), 8);
  const kv_layer_view kv{k.data(), v.data(), bs, n_kv, hd};
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) table[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const auto q = random_floats(static_cast<size_t>(n_queries * n_heads * hd), 9);
  std::vector<float> out(q.size());
  std::vector<attn_query> queries;
  for (int64_t i = 0; i < n_queries; ++i)
    queries.push_back({q.data() + i * n_heads * hd, out.data() + i * n_heads * hd, table.data() + i * blocks_per_seq, n_ctx});
  for (auto _ : state) {
    paged_attention(pool(), kv, queries.data(), n_queries, n_heads, 0.125f);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n_queries * n_ctx * n_kv * hd * 8);
}
BENCHMARK(bm_attention)->Args({1, 512})->Args({1, 4096})->Args({16, 512})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
