// The same model code as shards of a tensor-parallel x pipeline-parallel replica, one thread per shard
// and an in-process communicator group between them: the greedy tokens of tp 2, pp 2 and tp 2 x pp 2
// equal those of one shard (stories260K in F32, and a random-weight Q8_0 model whose column slices are
// whole quantized blocks and whose rows are repacked); the logits of tp 2 are those of one shard up to
// float rounding; every shard refuses a bad plan alike without waiting on its peers; a layout the
// model does not divide into is refused naming why; a peer that never shows up fails the step within
// the timeout.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/local_communicator.hpp"
#include "runtime/comm/parallel.hpp"
#include "runtime/kv/kv_pool.hpp"
#include "runtime/model/llama_model.hpp"
#include "runtime/model/make_model.hpp"
#include "runtime/model/model_runner.hpp"
#include "runtime/serving/shard_runner.hpp"
#include "tests/runtime/format/temp_dir.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

/// A random-weight model of the stories-260k shape (8 heads, 4 kv heads, ffn 192, 5 layers) with
/// stories260K's tokenizer, written once for the suite.
const std::string& random_model() {
  static troupe::testing::temp_dir dir;
  static const std::string path = [] {
    make_model_options o;
    o.shape = "stories-260k";
    o.type = dtype::q8_0;
    o.seed = 11;
    o.tokenizer_from = stories;
    o.output = dir / "random-q8_0.gguf";
    auto made = make_random_model(o);
    EXPECT_TRUE(made) << made.error().what();
    return o.output.string();
  }();
  return path;
}

/// The communicators of a tp x pp replica: tp groups per stage, pp groups per tp rank.
std::vector<parallel_context> contexts(int tp, int pp, std::chrono::milliseconds timeout = 30s) {
  std::vector<std::vector<std::shared_ptr<communicator>>> tp_groups(static_cast<size_t>(pp)),
      pp_groups(static_cast<size_t>(tp));
  if (tp > 1)
    for (auto& g : tp_groups) g = make_local_group(tp, timeout);
  if (pp > 1)
    for (auto& g : pp_groups) g = make_local_group(pp, timeout);
  std::vector<parallel_context> out;
  for (int s = 0; s < pp; ++s)
    for (int r = 0; r < tp; ++r)
      out.push_back(parallel_context{parallel_layout{tp, r, pp, s},
                                     tp > 1 ? tp_groups[static_cast<size_t>(s)][static_cast<size_t>(r)] : nullptr,
                                     pp > 1 ? pp_groups[static_cast<size_t>(r)][static_cast<size_t>(s)] : nullptr});
  return out;
}

engine_options options(const std::string& model, const parallel_context& par = {}) {
  engine_options o;
  o.model_path = model;
  o.model.threads = 1;
  o.model.parallel = par;
  o.kv.n_blocks = 16;
  return o;
}

/// The shards of one replica, in stage-major order (stage s, tp rank r at s * tp + r).
struct replica {
  int tp = 1, pp = 1;
  std::vector<std::unique_ptr<shard_runner>> shards;

  size_t sampler() const { return static_cast<size_t>((pp - 1) * tp); }

  /// Runs the plan on every shard at once (one thread each), as the scheduler's shards would.
  std::vector<step_result> run(const step_plan& plan) {
    std::vector<step_result> results(shards.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < shards.size(); ++i) threads.emplace_back([&, i] { results[i] = shards[i]->run(plan); });
    for (auto& t : threads) t.join();
    return results;
  }
};

replica load(const std::string& model, int tp, int pp, std::chrono::milliseconds timeout = 30s) {
  replica rep{tp, pp, {}};
  for (const parallel_context& par : contexts(tp, pp, timeout)) {
    auto s = shard_runner::load(options(model, par));
    EXPECT_TRUE(s) << s.error().what();
    if (!s) return replica{};
    rep.shards.push_back(std::move(*s));
  }
  return rep;
}

std::vector<int32_t> encode(const std::string& model, const std::string& text) {
  auto e = engine::load(options(model));
  EXPECT_TRUE(e) << e.error().what();
  return e ? (*e)->tok().encode_prompt(text) : std::vector<int32_t>{};
}

seq_plan step_of(request_id id, std::vector<int32_t> tokens, int64_t pos, std::vector<int32_t> blocks, bool sample) {
  seq_plan s;
  s.id = id;
  s.tokens = std::move(tokens);
  s.start_pos = pos;
  s.block_table = std::move(blocks);
  s.sample = sample;
  return s;
}

/// Two prompts batched: a's in one prefill, b's in two chunks (the first without sampling), then
/// `decodes` greedy decode steps of both. Every shard but the sampling one must return no outputs
/// and no error. The tokens sampled for a and for b.
std::pair<std::vector<int32_t>, std::vector<int32_t>> generate(replica& rep, const std::vector<int32_t>& pa,
                                                               const std::vector<int32_t>& pb, int decodes) {
  const std::vector<int32_t> ta{0, 1, 2}, tb{7, 5, 3};
  sampling_params greedy;
  greedy.temperature = 0.0f;
  const size_t half = pb.size() / 2;
  step_plan p;
  p.step = 1;
  p.seqs = {step_of(1, pa, 0, ta, true), step_of(2, {pb.begin(), pb.begin() + static_cast<std::ptrdiff_t>(half)}, 0, tb, false)};
  for (auto& s : p.seqs) {
    s.new_sequence = true;
    s.params = greedy;
  }
  p.seqs[0].prompt = pa;
  p.seqs[1].prompt = pb;
  std::vector<int32_t> a, b;
  int64_t pos_a = static_cast<int64_t>(pa.size()), pos_b = static_cast<int64_t>(half);
  for (int i = 0; i <= decodes + 1 && !::testing::Test::HasFatalFailure(); ++i) {
    std::vector<step_result> res = rep.run(p);
    for (size_t k = 0; k < res.size(); ++k) {
      EXPECT_TRUE(res[k].error.empty()) << "shard " << k << ": " << res[k].error;
      if (k != rep.sampler()) {
        EXPECT_TRUE(res[k].outputs.empty()) << "shard " << k << " samples";
      }
    }
    const step_result& out = res[rep.sampler()];
    if (!out.error.empty()) return {a, b};
    p.step++;
    std::vector<seq_plan> next;
    for (const seq_output& o : out.outputs) {
      auto& got = o.id == 1 ? a : b;
      got.push_back(o.sample.token);
      int64_t& pos = o.id == 1 ? pos_a : pos_b;
      next.push_back(step_of(o.id, {o.sample.token}, pos++, o.id == 1 ? ta : tb, true));
    }
    if (i == 0) {  // the rest of b's prompt
      next.push_back(step_of(2, {pb.begin() + static_cast<std::ptrdiff_t>(half), pb.end()}, pos_b, tb, true));
      pos_b = static_cast<int64_t>(pb.size());
    }
    p.seqs = std::move(next);
  }
  return {a, b};
}

class ParallelGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelGreedy, GreedyTokensOfEveryLayoutEqualOneShards) {
  const std::string model = GetParam() == "stories260K" ? stories : random_model();
  const auto pa = encode(model, "Once upon a time, there was a little dog");
  const auto pb = encode(model, "Lily liked to play in the park with her friends");
  ASSERT_GT(pb.size(), 4u);
  const int decodes = 16;

  replica single = load(model, 1, 1);
  ASSERT_EQ(single.shards.size(), 1u);
  const auto [ra, rb] = generate(single, pa, pb, decodes);
  ASSERT_EQ(ra.size(), static_cast<size_t>(decodes + 2));
  ASSERT_EQ(rb.size(), static_cast<size_t>(decodes + 1));

  for (auto [tp, pp] : {std::pair{2, 1}, std::pair{1, 2}, std::pair{2, 2}}) {
    SCOPED_TRACE("tp " + std::to_string(tp) + " x pp " + std::to_string(pp));
    replica rep = load(model, tp, pp);
    ASSERT_EQ(rep.shards.size(), static_cast<size_t>(tp * pp));
    for (size_t k = 0; k < rep.shards.size(); ++k) {
      EXPECT_EQ(rep.shards[k]->info().samples, k == rep.sampler()) << "shard " << k;
      EXPECT_EQ(rep.shards[k]->info().n_layers, 5) << "every shard reports the whole model";
    }
    const auto [a, b] = generate(rep, pa, pb, decodes);
    EXPECT_EQ(a, ra);
    EXPECT_EQ(b, rb);
    for (const auto& s : rep.shards) EXPECT_EQ(s->n_sequences(), 2u) << "every shard tracks the live sequences";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ParallelGreedy, ::testing::Values("stories260K", "random_q8_0"),
                         [](const auto& info) { return info.param; });

/// One llama_model per shard of a tp-rank group over its own KV pool, run on threads.
struct model_shard {
  std::unique_ptr<llama_model> model;
  std::unique_ptr<kv_pool> kv;
};

/// The model at `path`, with Qwen2-style Q/K/V biases that differ per element when `biases`, so that
/// a rank reading another rank's part of them would show.
model_weights weights_of(const std::string& path, bool biases) {
  auto w = load_model_weights(path);
  EXPECT_TRUE(w) << w.error().what();
  if (!biases) return std::move(*w);
  const model_hparams& hp = w->hp;
  w->hp.qkv_bias = true;
  for (int64_t l = 0; l < hp.n_layers; ++l)
    for (auto [name, n] : {std::pair{"attn_q.bias", hp.n_heads}, {"attn_k.bias", hp.n_kv_heads}, {"attn_v.bias", hp.n_kv_heads}}) {
      auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(n * hp.head_dim));
      for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] = 0.05f * std::sin(static_cast<float>(i + 7 * l));
      w->tensors["blk." + std::to_string(l) + "." + name] = tensor_ref{dtype::f32, {static_cast<int64_t>(buf->size())}, buf->data(), buf->size() * 4};
      w->storage.push_back(buf);
    }
  return std::move(*w);
}

model_shard make_shard(model_weights w, const parallel_context& par) {
  model_options o;
  o.threads = 1;
  o.parallel = par;
  auto m = llama_model::create(std::move(w), o);
  EXPECT_TRUE(m) << m.error().what();
  if (!m) return {};
  const shard_shape& sh = (*m)->shard();
  auto kv = kv_pool::create(sh.n_layers, sh.n_kv_heads, (*m)->hparams().head_dim, kv_pool_config{16, 8});
  EXPECT_TRUE(kv);
  return {std::move(*m), std::move(*kv)};
}

TEST(ParallelForwardLogits, TensorParallelLogitsEqualOneShardsUpToRounding) {
  for (auto [path, biases] : {std::pair{stories, false}, {random_model(), false}, {stories, true}}) {
    SCOPED_TRACE(path + (biases ? " with Q/K/V biases" : ""));
    const auto prompt = encode(path, "Once upon a time, there was a little dog");
    const std::vector<int32_t> table{0, 1};
    forward_batch batch;
    batch.seqs.push_back(seq_step{prompt, 0, table, true});

    model_shard one = make_shard(weights_of(path, biases), {});
    ASSERT_TRUE(one.model);
    EXPECT_EQ(one.model->shard().n_heads, 8);
    const size_t V = static_cast<size_t>(one.model->hparams().n_vocab);
    std::vector<float> want(V);
    ASSERT_TRUE(one.model->forward(batch, *one.kv, want));

    std::vector<model_shard> shards;
    for (const auto& par : contexts(2, 1)) shards.push_back(make_shard(weights_of(path, biases), par));
    ASSERT_TRUE(shards[0].model && shards[1].model);
    EXPECT_EQ(shards[1].model->shard().n_heads, 4);
    EXPECT_EQ(shards[1].model->shard().n_kv_heads, 2);
    EXPECT_LT(shards[1].model->weight_bytes_per_token(), one.model->weight_bytes_per_token());
    std::vector<float> got(V);
    std::vector<status> st(2);
    std::thread peer([&] { st[1] = shards[1].model->forward(batch, *shards[1].kv, {}); });
    st[0] = shards[0].model->forward(batch, *shards[0].kv, got);
    peer.join();
    ASSERT_TRUE(st[0]) << st[0].error().what();
    ASSERT_TRUE(st[1]) << st[1].error().what();
    float max_diff = 0.0f, max_abs = 0.0f;
    for (size_t i = 0; i < V; ++i) {
      max_diff = std::max(max_diff, std::fabs(got[i] - want[i]));
      max_abs = std::max(max_abs, std::fabs(want[i]));
    }
    EXPECT_GT(max_abs, 0.1f);
    // Only the order of the row-parallel sums differs (each rank's half, then the two halves).
    EXPECT_LT(max_diff, 1e-4f * std::max(1.0f, max_abs)) << "max |logit| " << max_abs;
  }
}

TEST(ParallelLayout, StagesTakeContiguousLayersEarlierOnesTheExtra) {
  EXPECT_EQ(parallel_layout::stage_layers(5, 2, 0), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(parallel_layout::stage_layers(5, 2, 1), (std::pair<int64_t, int64_t>{3, 2}));
  EXPECT_EQ(parallel_layout::stage_layers(7, 3, 0), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(parallel_layout::stage_layers(7, 3, 1), (std::pair<int64_t, int64_t>{3, 2}));
  EXPECT_EQ(parallel_layout::stage_layers(7, 3, 2), (std::pair<int64_t, int64_t>{5, 2}));
  EXPECT_EQ(parallel_layout::stage_layers(4, 4, 3), (std::pair<int64_t, int64_t>{3, 1}));
  EXPECT_TRUE((parallel_layout{2, 1, 2, 1}.samples()) == false);
  EXPECT_TRUE((parallel_layout{2, 0, 2, 1}.samples()));
  EXPECT_FALSE((parallel_layout{2, 0, 2, 0}.samples()));
}

TEST(ParallelLayout, ALayoutTheModelDoesNotDivideIntoIsRefusedNamingWhy) {
  auto refused = [](const std::string& model, parallel_context par) {
    auto e = engine::load(options(model, par));
    EXPECT_FALSE(e);
    return e ? std::string() : e.error().what();
  };
  auto with = [](parallel_layout l) {
    parallel_context par = contexts(l.tp_size, l.pp_size)[static_cast<size_t>(l.pp_stage * l.tp_size + l.tp_rank)];
    return par;
  };
  EXPECT_NE(refused(stories, with({3, 0, 1, 0})).find("8 heads do not divide evenly over tp size 3"), std::string::npos);
  EXPECT_NE(refused(stories, with({8, 0, 1, 0})).find("4 kv heads do not divide evenly over tp size 8"), std::string::npos);
  EXPECT_NE(refused(stories, with({1, 0, 6, 0})).find("pp size 6 is more than the model's 5 layers"), std::string::npos);
  // stories260K is F32: any column count is a whole slice. Q8_0 rows come in blocks of 32, and tp 4 would
  // give each rank 16 columns of attn_output.
  EXPECT_NE(refused(random_model(), with({4, 1, 1, 0})).find("16 columns of attn_output would cut a quantized block of 32"),
            std::string::npos);
  EXPECT_NE(refused(stories, parallel_context{parallel_layout{2, 0, 1, 0}, nullptr, nullptr}).find("no tp communicator"),
            std::string::npos);
  EXPECT_NE(refused(stories, parallel_context{parallel_layout{1, 0, 2, 2}, nullptr, nullptr}).find("pp stage 2 is outside [0, 2)"),
            std::string::npos);
  auto three = make_local_group(3);
  EXPECT_NE(refused(stories, parallel_context{parallel_layout{2, 1, 1, 0}, three[1], nullptr}).find("rank 1 of 3, not 1 of 2"),
            std::string::npos);

  // The CUDA runner has no tensor or pipeline parallelism yet: refused before the device is touched.
  auto w = load_model_weights(stories);
  ASSERT_TRUE(w) << w.error().what();
  runner_options ro;
  ro.device = device_spec{device_spec::kind_t::cuda, 0};
  ro.cpu.parallel = with({2, 0, 1, 0});
  ro.kv.n_blocks = 4;
  auto gpu = create_model_runner(std::move(*w), ro);
  ASSERT_FALSE(gpu);
  EXPECT_NE(gpu.error().message().find("cuda:0: tensor and pipeline parallelism (tp rank 0/2, pp stage 0/1) run on the CPU only"),
            std::string::npos)
      << gpu.error().what();
}

TEST(ParallelForward, EveryShardRefusesABadPlanAloneAndTheReplicaServesOn) {
  replica rep = load(stories, 2, 2, 5s);
  ASSERT_EQ(rep.shards.size(), 4u);
  const auto pa = encode(stories, "Once upon a time");
  step_plan bad;
  bad.step = 1;
  bad.seqs = {step_of(1, pa, 0, {0, 99}, true)};  // block 99 is outside the 16 blocks
  bad.seqs[0].new_sequence = true;
  bad.seqs[0].prompt = pa;
  const auto t0 = std::chrono::steady_clock::now();
  for (const step_result& r : rep.run(bad)) EXPECT_NE(r.error.find("block id 99"), std::string::npos) << r.error;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "no shard may wait for a peer that refused the plan";

  replica single = load(stories, 1, 1);
  const auto pb = encode(stories, "Lily liked to play in the park");
  const auto want = generate(single, pa, pb, 3);
  EXPECT_EQ(generate(rep, pa, pb, 3), want);
}

TEST(ParallelForward, APeerThatNeverShowsUpFailsTheStepWithinTheTimeout) {
  const auto prompt = encode(stories, "Once upon a time");
  step_plan p;
  p.step = 1;
  p.seqs = {step_of(1, prompt, 0, {0}, true)};
  p.seqs[0].new_sequence = true;
  p.seqs[0].prompt = prompt;

  {  // tp rank 1 never runs: rank 0 waits in the first all-reduce
    replica rep = load(stories, 2, 1, 200ms);
    ASSERT_EQ(rep.shards.size(), 2u);
    const auto t0 = std::chrono::steady_clock::now();
    step_result r = rep.shards[0]->run(p);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    EXPECT_NE(r.error.find("tp rank 0/2, pp stage 0/1"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("all-reducing the attention output"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("rank 1 to join"), std::string::npos) << r.error;
    EXPECT_TRUE(r.outputs.empty());
    EXPECT_EQ(rep.shards[0]->n_sequences(), 0u) << "a failed step starts no sequence";
  }
  {  // stage 0 never runs: the last stage waits for its activations
    replica rep = load(stories, 1, 2, 200ms);
    ASSERT_EQ(rep.shards.size(), 2u);
    const auto t0 = std::chrono::steady_clock::now();
    step_result r = rep.shards[1]->run(p);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    EXPECT_NE(r.error.find("pp stage 1/2"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("receiving the previous stage's activations"), std::string::npos) << r.error;
    EXPECT_EQ(r.error.rfind("unavailable", 0), 0u) << r.error;
  }
}

}  // namespace
}  // namespace troupe
