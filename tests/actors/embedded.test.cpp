// The embedding API: in-process generation through the actor topology, with a callback, a stream
// object, cancellation, and errors as values.
#include "actors/embedded.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace troupe {
namespace {

const std::string shared_dir = TROUPE_SHARED_DIR;

std::string golden_text(const std::string& id) {
  std::ifstream in(shared_dir + "/golden/stories260K_greedy.json");
  const auto golden = nlohmann::json::parse(in);
  for (const auto& c : golden.at("cases"))
    if (c.at("id") == id) return c.at("text");
  return {};
}

std::string lstrip(std::string s) {
  s.erase(0, s.find_first_not_of(' '));
  return s;
}

std::unique_ptr<embedded_runtime> start() {
  serve_config cfg;
  model_config m;
  m.name = "stories";
  m.path = shared_dir + "/models/stories260K/stories260K.gguf";
  m.threads = 1;
  cfg.models.push_back(m);
  auto rt = embedded_runtime::start(cfg);
  EXPECT_TRUE(rt) << rt.error().what();
  return rt ? std::move(*rt) : nullptr;
}

generate_options greedy(int n) {
  generate_options o;
  o.max_tokens = n;
  o.sampling.temperature = 0.0f;
  return o;
}

TEST(EmbeddedRuntime, CallbackAndStreamGiveTheReferenceText) {
  auto rt = start();
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->models(), std::vector<std::string>{"stories"});
  std::string seen;
  auto out = rt->generate("stories", "Once upon a time", greedy(64), [&](std::string_view t, int32_t) {
    seen += t;
    return true;
  });
  ASSERT_TRUE(out) << out.error().what();
  EXPECT_EQ(lstrip(out->text), lstrip(golden_text("once_upon")));
  EXPECT_EQ(seen, out->text);
  EXPECT_EQ(out->tokens.size(), 64u);
  EXPECT_EQ(out->finish_reason, "length");
  EXPECT_EQ(out->usage.prompt_tokens, 5);

  auto s = rt->open_stream("stories", "Tom and his dog went to the", greedy(64));
  ASSERT_TRUE(s);
  std::string text;
  while (auto ev = (*s)->next()) text += ev->text;
  EXPECT_EQ(lstrip(text), lstrip(golden_text("tom_dog")));
}

TEST(EmbeddedRuntime, ConcurrentCallersFromSeveralThreadsAllGetTheirText) {
  auto rt = start();
  ASSERT_TRUE(rt);
  std::vector<std::string> texts(6);
  std::vector<std::thread> ts;
  for (int i = 0; i < 6; ++i)
    ts.emplace_back([&, i] {
      auto out = rt->generate("stories", "Once upon a time", greedy(32));
      if (out) texts[static_cast<size_t>(i)] = out->text;
    });
  for (auto& t : ts) t.join();
  for (const auto& t : texts) EXPECT_EQ(t, texts[0]);
  EXPECT_FALSE(texts[0].empty());
}

TEST(EmbeddedRuntime, ACallbackReturningFalseCancels) {
  auto rt = start();
  ASSERT_TRUE(rt);
  int calls = 0;
  auto out = rt->generate("stories", "Once upon a time", greedy(200), [&](std::string_view, int32_t) { return ++calls < 5; });
  ASSERT_TRUE(out) << out.error().what();
  EXPECT_EQ(out->finish_reason, "cancelled");
  // The cancel travels to the scheduler while it keeps decoding (a step of this model takes well under
  // a millisecond), so a few more tokens may come; the request still ends long before max_tokens.
  EXPECT_GE(out->tokens.size(), 4u);
  EXPECT_LT(out->tokens.size(), 200u);
}

TEST(EmbeddedRuntime, ErrorsAreValues) {
  auto rt = start();
  ASSERT_TRUE(rt);
  auto unknown = rt->generate("nope", "x", greedy(4));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), errc::not_found);
  generate_options bad = greedy(4);
  bad.sampling.temperature = -1.0f;
  auto invalid = rt->generate("stories", "x", bad);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code(), errc::invalid_argument);
  serve_config none;
  EXPECT_FALSE(embedded_runtime::start(none));
}

}  // namespace
}  // namespace troupe
