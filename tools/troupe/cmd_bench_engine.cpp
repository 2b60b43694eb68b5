// troupe bench-engine: prefill, single-sequence decode and batched decode speed of the engine on one
// model, printed as one JSON object. Weights are paged in by a warm-up before anything is timed.
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "kernels/cpu/membw.hpp"
#include "runtime/engine/engine.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {
namespace {

struct bench_args {
  engine_options engine;
  int prompt_tokens = 128;
  int gen_tokens = 64;
  int batch = 16;
  uint64_t seed = 1;
  bool bandwidth = true;
};

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

/// The dtype most of the model's bytes are in (what "a Q8_0 model" means).
std::string main_dtype(const model_weights& w) {
  std::map<std::string, size_t> bytes;
  for (const auto& [name, t] : w.tensors) bytes[std::string(to_string(t.type))] += t.nbytes;
  return std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

int fail(const error& e) {
  std::fprintf(stderr, "troupe bench-engine: %s\n", e.what().c_str());
  return 1;
}

int run_bench(bench_args a) {
  const int B = std::max(1, a.batch), P = std::max(1, a.prompt_tokens), G = std::max(1, a.gen_tokens);
  // Enough blocks for B sequences of P + G tokens (plus the single-sequence runs, which reuse them).
  a.engine.kv.n_blocks = static_cast<int64_t>(B + 1) * ((P + G + a.engine.kv.block_size) / a.engine.kv.block_size + 1);
  // The bandwidth limit is probed before the model loads and again after the run, and the larger
  // figure is used: on a shared host the memory bandwidth one probe sees swings widely. The probe
  // reads host memory, so it only describes a model on the CPU.
  auto device = parse_device(a.engine.device);
  if (!device) return fail(device.error());
  if (device->kind != device_spec::kind_t::cpu) a.bandwidth = false;
  double bw_before = 0.0;
  if (a.bandwidth) {
    cpu::thread_pool pool(a.engine.model.threads > 0 ? a.engine.model.threads : static_cast<int>(std::thread::hardware_concurrency()));
    bw_before = cpu::measure_read_bandwidth_gbs(pool, size_t{256} << 20);  // 8x the L3; freed before the model loads
  }
  auto eng = engine::load(a.engine);
  if (!eng) return fail(eng.error());
  engine& e = **eng;
  const model_hparams& hp = e.hparams();
  if (P + G >= hp.context_length) return fail(error(errc::invalid_argument, "prompt + gen tokens exceed the context length"));
  const int64_t V = hp.n_vocab;

  std::mt19937_64 rng(a.seed);
  auto random_prompt = [&] {
    std::vector<int32_t> p(static_cast<size_t>(P));
    for (auto& t : p) t = static_cast<int32_t>(3 + rng() % static_cast<uint64_t>(V - 3));
    return p;
  };
  std::vector<float> logits(static_cast<size_t>(V * B));

  // Warm-up: touch every weight page once (a short prefill and a decode step).
  {
    block_table t;
    auto p = random_prompt();
    p.resize(std::min<size_t>(p.size(), 8));
    std::vector<float> l;
    if (auto st = e.prefill(p, t, l); !st) return fail(st.error());
    t.release(e.blocks());
  }

  // Prefill of one P-token prompt.
  block_table t0;
  const auto prompt0 = random_prompt();
  std::vector<float> last;
  auto t_start = clock_type::now();
  if (auto st = e.prefill(prompt0, t0, last); !st) return fail(st.error());
  const double prefill_s = seconds_since(t_start);

  // Single-sequence greedy decode of G tokens.
  int32_t tok = argmax(last.data(), V);
  int64_t pos = P;
  t_start = clock_type::now();
  for (int i = 0; i < G; ++i, ++pos) {
    if (!t0.reserve(e.blocks(), pos + 1, e.block_size())) return fail(error(errc::no_kv_blocks, "KV cache full"));
    forward_batch fb;
    fb.seqs.push_back(seq_step{std::span<const int32_t>(&tok, 1), pos, t0.blocks, true});
    if (auto st = e.forward(fb, logits); !st) return fail(st.error());
    tok = argmax(logits.data(), V);
  }
  const double decode_s = seconds_since(t_start);
  t0.release(e.blocks());

  // Batched decode: B sequences, each prefilled with its own prompt, then G steps all together.
  std::vector<block_table> tables(static_cast<size_t>(B));
  std::vector<int32_t> toks(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) {
    if (auto st = e.prefill(random_prompt(), tables[static_cast<size_t>(b)], last); !st) return fail(st.error());
    toks[static_cast<size_t>(b)] = argmax(last.data(), V);
  }
  t_start = clock_type::now();
  for (int i = 0; i < G; ++i) {
    const int64_t p = P + i;
    forward_batch fb;
    for (int b = 0; b < B; ++b) {
      auto& tb = tables[static_cast<size_t>(b)];
      if (!tb.reserve(e.blocks(), p + 1, e.block_size())) return fail(error(errc::no_kv_blocks, "KV cache full"));
      fb.seqs.push_back(seq_step{std::span<const int32_t>(&toks[static_cast<size_t>(b)], 1), p, tb.blocks, true});
    }
    if (auto st = e.forward(fb, logits); !st) return fail(st.error());
    for (int b = 0; b < B; ++b) toks[static_cast<size_t>(b)] = argmax(logits.data() + b * V, V);
  }
  const double batch_s = seconds_since(t_start);
  for (auto& tb : tables) tb.release(e.blocks());

  const double decode_tok_s = G / decode_s;
  const size_t bytes_per_token = e.weight_bytes_per_token();
  nlohmann::ordered_json j;
  j["model"] = a.engine.model_path;
  j["format"] = e.weights().format;
  j["dtype"] = main_dtype(e.weights());
  j["parameters"] = e.weights().parameter_count();
  j["device"] = e.device_name();
  j["threads"] = e.threads();
  j["prompt_tokens"] = P;
  j["gen_tokens"] = G;
  j["batch"] = B;
  j["prefill_tok_s"] = P / prefill_s;
  j["decode_tok_s"] = decode_tok_s;
  j["decode_ms_per_token"] = 1000.0 * decode_s / G;
  j["batch_decode_tok_s"] = static_cast<double>(B) * G / batch_s;
  j["batch_speedup"] = (static_cast<double>(B) * G / batch_s) / decode_tok_s;
  j["weight_bytes_per_token"] = bytes_per_token;
  j["decode_gb_s"] = static_cast<double>(bytes_per_token) * decode_tok_s / 1e9;
  // Peak RSS of the engine itself (mapped weight pages included), before the bandwidth probe's buffer.
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  j["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
  if (a.bandwidth) {
    cpu::thread_pool pool(e.threads());
    const double bw_after = cpu::measure_read_bandwidth_gbs(pool);
    const double bw = std::max(bw_before, bw_after);
    j["mem_read_bw_gb_s"] = bw;
    j["mem_read_bw_samples_gb_s"] = {bw_before, bw_after};
    j["bandwidth_fraction"] = static_cast<double>(bytes_per_token) * decode_tok_s / 1e9 / bw;
  }
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace

void add_bench_engine(CLI::App& app) {
  auto args = std::make_shared<bench_args>();
  CLI::App* cmd = app.add_subcommand("bench-engine", "measure prefill, decode and batched decode speed; prints JSON");
  add_engine_options(*cmd, args->engine);
  cmd->add_option("--prompt-tokens", args->prompt_tokens, "prompt length for prefill (and each batched sequence)")->capture_default_str();
  cmd->add_option("--gen-tokens", args->gen_tokens, "tokens decoded per sequence")->capture_default_str();
  cmd->add_option("--batch", args->batch, "sequences decoding together for batch_decode_tok_s")->capture_default_str();
  cmd->add_option("--seed", args->seed, "seed of the random prompts")->capture_default_str();
  cmd->add_flag("!--no-bandwidth", args->bandwidth, "skip measuring the memory read bandwidth (its 256 MiB probe buffer counts in peak_rss_mb for models smaller than that)");
  cmd->callback([args] { exit_code() = run_bench(*args); });
}

}  // namespace troupe::cli
