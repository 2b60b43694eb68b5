// Stop strings are matched on the detokenized text, across token boundaries, and cut from the
// output; text that might still become a stop string is held back, the rest streams.
#include <gtest/gtest.h>

#include <string>

#include "runtime/serving/scheduler_policy.hpp"
#include "tests/runtime/serving/fake_shard.hpp"

namespace troupe {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

std::unique_ptr<tokenizer> load_tok() {
  auto t = load_tokenizer(shared_dir + "/models/stories260K/tok512.model");
  EXPECT_TRUE(t) << t.error().what();
  return t ? std::move(*t) : nullptr;
}

struct run_result {
  testing::stream s;
  int text_events = 0;  ///< events that carried text
  int blocks_used_after = -1;
};

run_result run_script(const tokenizer& tok, const std::vector<int32_t>& script, std::vector<std::string> stop,
                      int max_tokens) {
  scheduler_config c;
  c.max_model_len = 512;
  scheduler_policy p(c, {4, 64, false}, &tok);
  testing::fake_shard shard(4, 64);
  shard.script(1, script);
  serving_request r;
  r.id = 1;
  r.prompt = {1, 40, 41};
  r.max_tokens = max_tokens;
  r.stop = std::move(stop);
  r.params.temperature = 0.0f;
  EXPECT_FALSE(p.add(r));
  std::map<request_id, testing::stream> streams;
  run_result out;
  for (int i = 0; i < 1000 && p.has_work(); ++i) {
    auto plan = p.schedule();
    auto events = p.update(plan, shard.run(plan));
    for (const auto& ev : events) out.text_events += ev.text.empty() ? 0 : 1;
    testing::collect(streams, events);
  }
  out.s = streams[1];
  out.blocks_used_after = static_cast<int>(p.blocks().stats().blocks_used);
  return out;
}

const std::string story = "Once upon a time there was a little cat named Tom. Tom liked to play.";

/// The text of generated ids: a continuation, so a leading dummy-prefix space stays.
std::string continuation(const tokenizer& tok, const std::vector<int32_t>& ids, size_t n) {
  std::string s;
  for (size_t i = 0; i < n && i < ids.size(); ++i) s += tok.decode_bytes(ids[i]);
  return s;
}

TEST(StopStrings, CutAcrossTokenBoundaries) {
  auto tok = load_tok();
  ASSERT_TRUE(tok);
  const auto ids = tok->encode(story);
  const std::string full = continuation(*tok, ids, ids.size());
  ASSERT_NE(full.find(story), std::string::npos);
  const std::string stop = "time there w";
  for (int32_t id : ids) ASSERT_EQ(tok->token_bytes(id).find(stop), std::string::npos);  // spans tokens
  auto out = run_script(*tok, ids, {stop}, 100);
  EXPECT_EQ(out.s.finish, finish_kind::stop);
  EXPECT_EQ(out.s.text, full.substr(0, full.find(stop)));
  EXPECT_NE(out.s.text.find("Once upon a "), std::string::npos);
  // Generation stopped at the token that completed the stop string, not later.
  const size_t n = out.s.tokens.size();
  EXPECT_NE(continuation(*tok, ids, n).find(stop), std::string::npos);
  EXPECT_EQ(continuation(*tok, ids, n - 1).find(stop), std::string::npos);
  EXPECT_EQ(out.blocks_used_after, 0);
}

TEST(StopStrings, EarliestMatchWins) {
  auto tok = load_tok();
  ASSERT_TRUE(tok);
  const auto ids = tok->encode(story);
  auto out = run_script(*tok, ids, {"cat", "was a"}, 100);
  EXPECT_EQ(out.s.finish, finish_kind::stop);
  const std::string full = continuation(*tok, ids, ids.size());
  EXPECT_EQ(out.s.text, full.substr(0, full.find("was a")));
}

TEST(StopStrings, TextStreamsAndIsCompleteWithoutAMatch) {
  auto tok = load_tok();
  ASSERT_TRUE(tok);
  const auto ids = tok->encode(story);
  auto out = run_script(*tok, ids, {"dog", "Tom liked to sing"}, static_cast<int>(ids.size()));
  EXPECT_EQ(out.s.finish, finish_kind::length);
  EXPECT_EQ(out.s.text, continuation(*tok, ids, ids.size()));  // what was held back comes at the end
  EXPECT_EQ(out.s.tokens, ids);
  EXPECT_GT(out.text_events, static_cast<int>(ids.size()) / 2);  // held back only near the end
}

TEST(StopStrings, EosTokenTextIsNotOutput) {
  auto tok = load_tok();
  ASSERT_TRUE(tok);
  ASSERT_GE(tok->eos_id(), 0);
  auto ids = tok->encode("The end.");
  const size_t n = ids.size();
  ids.push_back(tok->eos_id());
  ids.push_back(ids[0]);
  auto out = run_script(*tok, ids, {}, 100);
  EXPECT_EQ(out.s.finish, finish_kind::stop);
  EXPECT_EQ(out.s.text, continuation(*tok, ids, n));
  EXPECT_EQ(out.s.tokens.size(), n);
  EXPECT_EQ(out.s.usage.completion_tokens, static_cast<int64_t>(n + 1));
}

}  // namespace
}  // namespace troupe
