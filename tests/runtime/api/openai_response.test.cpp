#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "runtime/api/openai.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

response_meta meta() { return {"chatcmpl-abc", "tiny", 1700000000}; }

std::vector<token_logprobs> two_tokens() {
  return {{"Hel", -0.5f, {{"Hel", -0.5f}, {"He", -1.5f}}}, {"lo", -0.25f, {{"lo", -0.25f}, {"\xe2\x82", -2.0f}}}};
}

TEST(OpenaiResponse, ChatCompletionShape) {
  std::vector<choice_result> choices(2);
  choices[0] = {0, "Hello", finish_reason::stop, two_tokens()};
  choices[1] = {1, "Hi", finish_reason::length, std::nullopt};
  const json b = json::parse(build_chat_completion(meta(), choices, {12, 7}));
  EXPECT_EQ(b["id"], "chatcmpl-abc");
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_EQ(b["created"], 1700000000);
  EXPECT_EQ(b["model"], "tiny");
  ASSERT_EQ(b["choices"].size(), 2u);
  const json& c0 = b["choices"][0];
  EXPECT_EQ(c0["index"], 0);
  EXPECT_EQ(c0["message"]["role"], "assistant");
  EXPECT_EQ(c0["message"]["content"], "Hello");
  EXPECT_EQ(c0["finish_reason"], "stop");
  const json& lp = c0["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0]["token"], "Hel");
  EXPECT_FLOAT_EQ(lp[0]["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(lp[0]["bytes"], json::array({72, 101, 108}));
  ASSERT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp[0]["top_logprobs"][1]["token"], "He");
  EXPECT_EQ(lp[0]["top_logprobs"][1]["bytes"], json::array({72, 101}));
  // A partial UTF-8 token: the text is replaced, the bytes are exact.
  EXPECT_EQ(lp[1]["top_logprobs"][1]["bytes"], json::array({0xe2, 0x82}));
  EXPECT_EQ(b["choices"][1]["finish_reason"], "length");
  EXPECT_TRUE(b["choices"][1]["logprobs"].is_null());
  EXPECT_EQ(b["usage"]["prompt_tokens"], 12);
  EXPECT_EQ(b["usage"]["completion_tokens"], 7);
  EXPECT_EQ(b["usage"]["total_tokens"], 19);
}

TEST(OpenaiResponse, TextCompletionShape) {
  std::vector<choice_result> choices = {{0, "Hello", finish_reason::length, two_tokens()}};
  const json b = json::parse(build_text_completion({"cmpl-1", "tiny", 5}, choices, {3, 2}));
  EXPECT_EQ(b["object"], "text_completion");
  const json& c = b["choices"][0];
  EXPECT_EQ(c["text"], "Hello");
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_EQ(c["logprobs"]["tokens"], json::array({"Hel", "lo"}));
  EXPECT_EQ(c["logprobs"]["token_logprobs"], json::array({-0.5, -0.25}));
  EXPECT_EQ(c["logprobs"]["text_offset"], json::array({0, 3}));
  ASSERT_EQ(c["logprobs"]["top_logprobs"].size(), 2u);
  EXPECT_FLOAT_EQ(c["logprobs"]["top_logprobs"][0]["He"].get<float>(), -1.5f);
  EXPECT_EQ(b["usage"]["total_tokens"], 5);
}

TEST(OpenaiResponse, InfiniteLogprobBecomesANumber) {
  std::vector<token_logprobs> lps = {{"x", -std::numeric_limits<float>::infinity(), {}}};
  std::vector<choice_result> choices = {{0, "x", finish_reason::stop, lps}};
  const json b = json::parse(build_chat_completion(meta(), choices, {}));
  EXPECT_EQ(b["choices"][0]["logprobs"]["content"][0]["logprob"], -9999.0);
}

TEST(OpenaiResponse, InvalidUtf8TextDoesNotThrow) {
  std::vector<choice_result> choices = {{0, "bad \xff", finish_reason::stop, std::nullopt}};
  std::string body;
  EXPECT_NO_THROW(body = build_chat_completion(meta(), choices, {}));
  EXPECT_TRUE(json::accept(body));
}

TEST(OpenaiResponse, ModelsList) {
  std::vector<model_card> models = {{"a", 1, "troupe", 4096}, {"b", 2, "me", 0}};
  const json b = json::parse(build_models_list(models));
  EXPECT_EQ(b["object"], "list");
  ASSERT_EQ(b["data"].size(), 2u);
  EXPECT_EQ(b["data"][0]["id"], "a");
  EXPECT_EQ(b["data"][0]["object"], "model");
  EXPECT_EQ(b["data"][0]["created"], 1);
  EXPECT_EQ(b["data"][0]["owned_by"], "troupe");
  EXPECT_EQ(b["data"][0]["max_model_len"], 4096);
  EXPECT_FALSE(b["data"][1].contains("max_model_len"));
  EXPECT_EQ(json::parse(build_models_list({}))["data"], json::array());
}

TEST(OpenaiResponse, ResponseIdsAreUnique) {
  const std::string a = make_response_id("chatcmpl-"), b = make_response_id("chatcmpl-");
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(a.size(), 9u + 24u);
  EXPECT_NE(a, b);
}

TEST(OpenaiSse, FrameAndDone) {
  EXPECT_EQ(sse_frame("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_frame(sse_done), "data: [DONE]\n\n");
  EXPECT_EQ(sse_frame("a\nb"), "data: a\ndata: b\n\n");
  const json e = json::parse(stream_error_payload(internal_error("boom")));
  EXPECT_EQ(e["error"]["message"], "boom");
  EXPECT_EQ(e["error"]["type"], "server_error");
}

TEST(OpenaiSse, ChatChunkSequence) {
  stream_encoder enc(api_endpoint::chat_completions, meta(), 2, /*include_usage=*/true);
  std::vector<json> chunks;
  auto take = [&](const std::vector<std::string>& v) {
    for (const auto& s : v) chunks.push_back(s == sse_done ? json("[DONE]") : json::parse(s));
  };
  take(enc.on_text(0, "Hel"));
  take(enc.on_text(0, "lo"));
  take(enc.on_finish(0, finish_reason::stop));
  take(enc.on_finish(1, finish_reason::length));  // a choice that produced no text
  take(enc.on_end({5, 2}));
  ASSERT_EQ(chunks.size(), 8u);
  // Role first, with empty content.
  EXPECT_EQ(chunks[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(chunks[0]["id"], "chatcmpl-abc");
  EXPECT_EQ(chunks[0]["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(chunks[0]["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(chunks[0].contains("usage") && chunks[0]["usage"].is_null());
  EXPECT_EQ(chunks[1]["choices"][0]["delta"], (json{{"content", "Hel"}}));
  EXPECT_EQ(chunks[2]["choices"][0]["delta"], (json{{"content", "lo"}}));
  EXPECT_EQ(chunks[3]["choices"][0]["delta"], json::object());
  EXPECT_EQ(chunks[3]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chunks[4]["choices"][0]["index"], 1);
  EXPECT_EQ(chunks[4]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[5]["choices"][0]["finish_reason"], "length");
  // The usage chunk: empty choices, totals.
  EXPECT_EQ(chunks[6]["choices"], json::array());
  EXPECT_EQ(chunks[6]["usage"]["total_tokens"], 7);
  EXPECT_EQ(chunks[7], "[DONE]");
}

TEST(OpenaiSse, WithoutIncludeUsageNoUsageChunk) {
  stream_encoder enc(api_endpoint::chat_completions, meta(), 1, false);
  const auto first = enc.on_text(0, "x");
  EXPECT_FALSE(json::parse(first[0]).contains("usage"));
  const auto end = enc.on_end({1, 1});
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0], sse_done);
}

TEST(OpenaiSse, ChatChunkLogprobs) {
  stream_encoder enc(api_endpoint::chat_completions, meta(), 1, false);
  const auto lps = two_tokens();
  const auto out = enc.on_text(0, "Hello", lps, true);
  ASSERT_EQ(out.size(), 2u);
  const json c = json::parse(out[1]);
  EXPECT_EQ(c["choices"][0]["logprobs"]["content"].size(), 2u);
  EXPECT_TRUE(json::parse(out[0])["choices"][0]["logprobs"].is_null());
}

TEST(OpenaiSse, CompletionChunksCarryTextOffsets) {
  stream_encoder enc(api_endpoint::completions, {"cmpl-1", "tiny", 1}, 1, false);
  std::vector<token_logprobs> a = {{"Hel", -0.5f, {}}}, b = {{"lo", -0.25f, {}}};
  const auto c1 = enc.on_text(0, "Hel", a, true);
  const auto c2 = enc.on_text(0, "lo", b, true);
  ASSERT_EQ(c1.size(), 1u);  // completions have no role chunk
  const json j1 = json::parse(c1[0]), j2 = json::parse(c2[0]);
  EXPECT_EQ(j1["object"], "text_completion");
  EXPECT_EQ(j1["choices"][0]["text"], "Hel");
  EXPECT_TRUE(j1["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(j1["choices"][0]["logprobs"]["text_offset"], json::array({0}));
  EXPECT_EQ(j2["choices"][0]["logprobs"]["text_offset"], json::array({3}));
  const json fin = json::parse(enc.on_finish(0, finish_reason::stop)[0]);
  EXPECT_EQ(fin["choices"][0]["text"], "");
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "stop");
}

TEST(OpenaiSse, OutOfRangeChoiceIsIgnored) {
  stream_encoder enc(api_endpoint::chat_completions, meta(), 1, false);
  EXPECT_TRUE(enc.on_text(3, "x").empty());
  EXPECT_TRUE(enc.on_finish(-1, finish_reason::stop).empty());
}

}  // namespace
}  // namespace troupe
