// Every message type survives CAF's binary serializer, alone and inside a caf::message (as it
// travels between nodes), and is registered under its stable name.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "actors/messages.hpp"
#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"

namespace troupe {
namespace {

struct messages_config : caf::actor_system_config {
  messages_config() { register_message_types(*this); }
};

// Field-by-field equality, written out here rather than through inspect() so that a field the
// inspector forgets shows up as a difference.
void expect_same(const sampling_params& a, const sampling_params& b) {
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.top_p, b.top_p);
  EXPECT_EQ(a.min_p, b.min_p);
  EXPECT_EQ(a.repetition_penalty, b.repetition_penalty);
  EXPECT_EQ(a.presence_penalty, b.presence_penalty);
  EXPECT_EQ(a.frequency_penalty, b.frequency_penalty);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.logprobs, b.logprobs);
  EXPECT_EQ(a.chosen_logprob, b.chosen_logprob);
  EXPECT_EQ(a.stop_token_ids, b.stop_token_ids);
}
void expect_same(const token_logprob& a, const token_logprob& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.logprob, b.logprob);
}
void expect_same(const sample_result& a, const sample_result& b) {
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.logprob, b.logprob);
  EXPECT_EQ(a.is_stop, b.is_stop);
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) expect_same(a.top[i], b.top[i]);
}
void expect_same(const block_copy& a, const block_copy& b) {
  EXPECT_EQ(a.src, b.src);
  EXPECT_EQ(a.dst, b.dst);
}
void expect_same(const seq_plan& a, const seq_plan& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.start_pos, b.start_pos);
  EXPECT_EQ(a.block_table, b.block_table);
  EXPECT_EQ(a.sample, b.sample);
  EXPECT_EQ(a.new_sequence, b.new_sequence);
  expect_same(a.params, b.params);
  EXPECT_EQ(a.prompt, b.prompt);
}
void expect_same(const step_plan& a, const step_plan& b) {
  EXPECT_EQ(a.step, b.step);
  ASSERT_EQ(a.copies.size(), b.copies.size());
  for (size_t i = 0; i < a.copies.size(); ++i) expect_same(a.copies[i], b.copies[i]);
  ASSERT_EQ(a.seqs.size(), b.seqs.size());
  for (size_t i = 0; i < a.seqs.size(); ++i) expect_same(a.seqs[i], b.seqs[i]);
  EXPECT_EQ(a.released, b.released);
}
void expect_same(const seq_output& a, const seq_output& b) {
  EXPECT_EQ(a.id, b.id);
  expect_same(a.sample, b.sample);
}
void expect_same(const step_result& a, const step_result& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.error, b.error);
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) expect_same(a.outputs[i], b.outputs[i]);
}
void expect_same(const shard_info& a, const shard_info& b) {
  EXPECT_EQ(a.n_vocab, b.n_vocab);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.context_length, b.context_length);
  EXPECT_EQ(a.n_blocks, b.n_blocks);
  EXPECT_EQ(a.block_size, b.block_size);
  EXPECT_EQ(a.samples, b.samples);
}

void expect_same(const serving_request& a, const serving_request& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.prompt, b.prompt);
  expect_same(a.params, b.params);
  EXPECT_EQ(a.max_tokens, b.max_tokens);
  EXPECT_EQ(a.stop, b.stop);
  EXPECT_EQ(a.ignore_eos, b.ignore_eos);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.fork_of, b.fork_of);
}
void expect_same(const usage_counts& a, const usage_counts& b) {
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
  EXPECT_EQ(a.completion_tokens, b.completion_tokens);
  EXPECT_EQ(a.cached_prompt_tokens, b.cached_prompt_tokens);
}
void expect_same(const token_event& a, const token_event& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.token_is_stop, b.token_is_stop);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.logprob, b.logprob);
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) expect_same(a.top[i], b.top[i]);
  EXPECT_EQ(a.finish, b.finish);
  EXPECT_EQ(a.error, b.error);
  expect_same(a.usage, b.usage);
}
void expect_same(const kv_block_stats& a, const kv_block_stats& b) {
  EXPECT_EQ(a.blocks_total, b.blocks_total);
  EXPECT_EQ(a.blocks_used, b.blocks_used);
  EXPECT_EQ(a.blocks_free, b.blocks_free);
  EXPECT_EQ(a.blocks_cached, b.blocks_cached);
  EXPECT_EQ(a.evictions, b.evictions);
  EXPECT_EQ(a.prefix_query_tokens, b.prefix_query_tokens);
  EXPECT_EQ(a.prefix_hit_tokens, b.prefix_hit_tokens);
}
void expect_same(const scheduler_stats& a, const scheduler_stats& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.replica, b.replica);
  EXPECT_EQ(a.up, b.up);
  EXPECT_EQ(a.routed, b.routed);
  EXPECT_EQ(a.waiting, b.waiting);
  EXPECT_EQ(a.running, b.running);
  EXPECT_EQ(a.preemptions, b.preemptions);
  EXPECT_EQ(a.steps, b.steps);
  expect_same(a.kv, b.kv);
}

// Sample values: every field away from its default.
sampling_params some_params() {
  sampling_params p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.25f;
  p.frequency_penalty = -0.5f;
  p.seed = 0xfedcba9876543210ull;
  p.logprobs = 3;
  p.chosen_logprob = true;
  p.stop_token_ids = {2, 13};
  return p;
}
sample_result some_sample() { return sample_result{417, -0.125f, {{417, -0.125f}, {9, -2.5f}}, true}; }
seq_plan some_seq(request_id id) {
  seq_plan s;
  s.id = id;
  s.tokens = {1, 2, 3, 500};
  s.start_pos = 77;
  s.block_table = {4, 0, 19, 7, 6, 5};
  s.sample = true;
  s.new_sequence = true;
  s.params = some_params();
  s.prompt = {1, 99, 98};
  return s;
}
step_plan some_plan() {
  step_plan p;
  p.step = 1234567890123ull;
  p.copies = {{3, 4}, {-1, 8}};
  p.seqs = {some_seq(1ull << 40), some_seq(2)};
  p.seqs[1].params.seed.reset();  // one without a seed
  p.seqs[1].sample = false;
  p.released = {5, 6, 7};
  return p;
}
serving_request some_request() {
  serving_request r;
  r.id = 1ull << 50;
  r.prompt = {1, 400, 401, 7};
  r.params = some_params();
  r.max_tokens = 99;
  r.stop = {"\n\n", "The end"};
  r.ignore_eos = true;
  r.priority = -3;
  r.fork_of = (1ull << 50) - 1;
  return r;
}
token_event some_event(finish_kind finish) {
  token_event ev;
  ev.id = 77;
  ev.token = 13;
  ev.token_is_stop = true;
  ev.text = "h\xc3\xa9llo";
  ev.logprob = -0.75f;
  ev.top = {{13, -0.75f}, {14, -1.5f}};
  ev.finish = finish;
  ev.error = finish == finish_kind::error ? "request 77: boom" : "";
  ev.usage = usage_counts{12, 5, 8};
  return ev;
}
scheduler_stats some_stats() {
  return scheduler_stats{"stories", "stories/1", false, 17, 3, 4, 5, 6, kv_block_stats{128, 20, 108, 7, 9, 300, 120}};
}
step_result some_result() { return step_result{99, {{1, some_sample()}, {2, sample_result{}}}, "step: boom"}; }

class Messages : public ::testing::Test {
 protected:
  messages_config cfg_;
  caf::actor_system sys_{cfg_};

  template <class T>
  T round_trip(const T& in) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys_, buf};
    T copy = in;
    auto err = sink(copy);
    EXPECT_FALSE(err) << caf::to_string(err);
    EXPECT_FALSE(buf.empty());
    T out;
    caf::binary_deserializer source{sys_, buf};
    err = source(out);
    EXPECT_FALSE(err) << caf::to_string(err);
    EXPECT_EQ(source.remaining(), 0u);
    return out;
  }
};

TEST_F(Messages, EachTypeRoundTripsThroughTheBinarySerializer) {
  expect_same(round_trip(some_params()), some_params());
  sampling_params unseeded = some_params();
  unseeded.seed.reset();
  expect_same(round_trip(unseeded), unseeded);
  sampling_params zero_seed;
  zero_seed.seed = 0;  // set to zero is not the same as unset
  expect_same(round_trip(zero_seed), zero_seed);
  expect_same(round_trip(token_logprob{7, -3.5f}), token_logprob{7, -3.5f});
  expect_same(round_trip(some_sample()), some_sample());
  expect_same(round_trip(some_seq(3)), some_seq(3));
  expect_same(round_trip(block_copy{11, 12}), block_copy{11, 12});
  expect_same(round_trip(some_plan()), some_plan());
  expect_same(round_trip(seq_output{5, some_sample()}), seq_output{5, some_sample()});
  expect_same(round_trip(some_result()), some_result());
  expect_same(round_trip(step_result{}), step_result{});
  const shard_info info{512, 5, 512, 128, 16, false};
  expect_same(round_trip(info), info);
  expect_same(round_trip(some_request()), some_request());
  expect_same(round_trip(serving_request{}), serving_request{});
  for (finish_kind k : {finish_kind::none, finish_kind::stop, finish_kind::length, finish_kind::cancelled,
                        finish_kind::error})
    expect_same(round_trip(some_event(k)), some_event(k));
  expect_same(round_trip(token_event{}), token_event{});
  expect_same(round_trip(usage_counts{1, 2, 3}), usage_counts{1, 2, 3});
  expect_same(round_trip(some_stats().kv), some_stats().kv);
  expect_same(round_trip(some_stats()), some_stats());
}

TEST_F(Messages, AnUnknownFinishKindIsRefusedOnLoad) {
  // A finish value from a newer peer (or a corrupt buffer) must not become an invalid enum.
  std::vector<char> buf;
  caf::binary_serializer sink{sys_, buf};
  token_event ev = some_event(finish_kind::stop);
  ASSERT_FALSE(sink(ev));
  // The finish field follows id, token, token_is_stop, text, logprob and top: find it by value.
  const int32_t stop_value = static_cast<int32_t>(finish_kind::stop);
  std::vector<char> probe;
  caf::binary_serializer probe_sink{sys_, probe};
  token_event other = ev;
  other.finish = finish_kind::length;
  ASSERT_FALSE(probe_sink(other));
  ASSERT_EQ(buf.size(), probe.size());
  size_t diff = 0, n_diff = 0;
  for (size_t i = 0; i < buf.size(); ++i)
    if (buf[i] != probe[i]) diff = i, ++n_diff;
  ASSERT_EQ(n_diff, 1u);
  ASSERT_EQ(static_cast<int32_t>(static_cast<unsigned char>(buf[diff])), stop_value);
  buf[diff] = 42;
  token_event out;
  caf::binary_deserializer source{sys_, buf};
  EXPECT_TRUE(source(out));
}

TEST_F(Messages, ATokenEventRoundTripsInsideACafMessage) {
  caf::message msg = caf::make_message(some_request(), some_event(finish_kind::length), some_stats());
  std::vector<char> buf;
  caf::binary_serializer sink{sys_, buf};
  ASSERT_FALSE(sink(msg));
  caf::message back;
  caf::binary_deserializer source{sys_, buf};
  auto err = source(back);
  ASSERT_FALSE(err) << caf::to_string(err);
  ASSERT_TRUE((back.match_elements<serving_request, token_event, scheduler_stats>()));
  expect_same(back.get_as<serving_request>(0), some_request());
  expect_same(back.get_as<token_event>(1), some_event(finish_kind::length));
  expect_same(back.get_as<scheduler_stats>(2), some_stats());
}

TEST_F(Messages, AStepPlanRoundTripsInsideACafMessage) {
  // What the middleman does with a request: the message is written with its type names and read
  // back by looking the names up in the receiving system's registry.
  caf::message msg = caf::make_message(some_plan(), some_result());
  std::vector<char> buf;
  caf::binary_serializer sink{sys_, buf};
  auto err = sink(msg);
  ASSERT_FALSE(err) << caf::to_string(err);
  caf::message back;
  caf::binary_deserializer source{sys_, buf};
  err = source(back);
  ASSERT_FALSE(err) << caf::to_string(err);
  ASSERT_TRUE((back.match_elements<step_plan, step_result>()));
  expect_same(back.get_as<step_plan>(0), some_plan());
  expect_same(back.get_as<step_result>(1), some_result());
}

TEST_F(Messages, TypesAreRegisteredUnderTheirStableNames) {
  auto name = [&](const std::type_info& ti) { return sys_.types().portable_name(0, &ti); };
  EXPECT_EQ(name(typeid(sampling_params)), "troupe::sampling_params");
  EXPECT_EQ(name(typeid(token_logprob)), "troupe::token_logprob");
  EXPECT_EQ(name(typeid(sample_result)), "troupe::sample_result");
  EXPECT_EQ(name(typeid(seq_plan)), "troupe::seq_plan");
  EXPECT_EQ(name(typeid(block_copy)), "troupe::block_copy");
  EXPECT_EQ(name(typeid(step_plan)), "troupe::step_plan");
  EXPECT_EQ(name(typeid(seq_output)), "troupe::seq_output");
  EXPECT_EQ(name(typeid(step_result)), "troupe::step_result");
  EXPECT_EQ(name(typeid(shard_info)), "troupe::shard_info");
  EXPECT_EQ(name(typeid(shard_actor)), "troupe::shard_actor");
  EXPECT_EQ(name(typeid(std::vector<seq_plan>)), "std::vector<troupe::seq_plan>");
  EXPECT_EQ(name(typeid(serving_request)), "troupe::serving_request");
  EXPECT_EQ(name(typeid(token_event)), "troupe::token_event");
  EXPECT_EQ(name(typeid(usage_counts)), "troupe::usage_counts");
  EXPECT_EQ(name(typeid(kv_block_stats)), "troupe::kv_block_stats");
  EXPECT_EQ(name(typeid(scheduler_stats)), "troupe::scheduler_stats");
  EXPECT_EQ(name(typeid(std::vector<scheduler_stats>)), "std::vector<troupe::scheduler_stats>");
  EXPECT_EQ(name(typeid(scheduler_actor)), "troupe::scheduler_actor");
  EXPECT_EQ(name(typeid(router_actor)), "troupe::router_actor");
}

TEST_F(Messages, AStepPlanPrintsForLogs) {
  const std::string s = caf::deep_to_string(some_plan());
  EXPECT_NE(s.find("troupe::step_plan"), std::string::npos) << s;
  EXPECT_NE(s.find("1234567890123"), std::string::npos) << s;
}

}  // namespace
}  // namespace troupe
