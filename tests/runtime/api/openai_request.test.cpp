#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/api/openai.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

json chat_base() {
  return {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
}
json completion_base() { return {{"model", "m"}, {"prompt", "Once upon"}}; }

api_result<generation_request> chat(const json& j) { return parse_chat_request(j.dump()); }
api_result<generation_request> completion(const json& j) { return parse_completion_request(j.dump()); }

json with(json j, const std::string& key, json value) {
  j[key] = std::move(value);
  return j;
}

// Expects a 400 naming param, and checks the body's OpenAI shape.
void expect_bad(const api_result<generation_request>& r, const std::string& param,
                const std::string& code = "invalid_value") {
  ASSERT_FALSE(r.has_value()) << "expected an error for " << param;
  const api_error& e = r.error();
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, param);
  EXPECT_EQ(e.code, code);
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_NE(e.message.find(param.substr(0, param.find('['))), std::string::npos) << e.message;
  const json body = json::parse(e.body());
  ASSERT_TRUE(body.contains("error"));
  EXPECT_EQ(body["error"]["param"], param);
  EXPECT_EQ(body["error"]["code"], code);
  EXPECT_EQ(body["error"]["message"], e.message);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
}

TEST(OpenaiChatRequest, MinimalRequestHasDefaults) {
  auto r = chat(chat_base());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->endpoint, api_endpoint::chat_completions);
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->messages.size(), 1u);
  EXPECT_EQ(r->messages[0].role, "user");
  EXPECT_EQ(r->messages[0].content, "hi");
  EXPECT_FALSE(r->max_tokens.has_value());
  EXPECT_EQ(r->n, 1);
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->logprobs);
  EXPECT_FALSE(r->sampling.chosen_logprob);  // no log-softmax pass per token unless asked
  EXPECT_FLOAT_EQ(r->sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 1.0f);
  EXPECT_FALSE(r->sampling.seed.has_value());
  EXPECT_EQ(r->choice_count(), 1);
}

TEST(OpenaiChatRequest, EveryFieldMapsToTheRequest) {
  json j = chat_base();
  j["messages"] = json::array({{{"role", "developer"}, {"content", "be brief"}},
                               {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                            {{"type", "text"}, {"text", "b"}}})}},
                               {{"role", "assistant"}, {"content", nullptr}},
                               {{"role", "user"}, {"content", "c"}, {"name", "bob"}}});
  j["max_tokens"] = 10;
  j["temperature"] = 0.5;
  j["top_p"] = 0.9;
  j["top_k"] = 40;
  j["min_p"] = 0.05;
  j["seed"] = 1234;
  j["stop"] = json::array({"\n\n", "END"});
  j["presence_penalty"] = 0.5;
  j["frequency_penalty"] = -0.5;
  j["repetition_penalty"] = 1.1;
  j["n"] = 3;
  j["logprobs"] = true;
  j["top_logprobs"] = 5;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  j["user"] = "u-1";
  j["stop_token_ids"] = json::array({2, 7});
  j["ignore_eos"] = true;
  j["tools_unknown_field"] = {{"ignored", true}};
  auto r = chat(j);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->messages.size(), 4u);
  EXPECT_EQ(r->messages[0].role, "system");  // developer -> system
  EXPECT_EQ(r->messages[1].content, "a\nb");
  EXPECT_EQ(r->messages[2].role, "assistant");
  EXPECT_EQ(r->messages[2].content, "");
  EXPECT_EQ(r->max_tokens, 10);
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->sampling.min_p, 0.05f);
  EXPECT_EQ(r->sampling.seed, 1234u);
  EXPECT_EQ(r->stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_FLOAT_EQ(r->sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(r->n, 3);
  EXPECT_EQ(r->choice_count(), 3);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->sampling.logprobs, 5);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->user, "u-1");
  EXPECT_EQ(r->sampling.stop_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_TRUE(r->ignore_eos);
}

TEST(OpenaiChatRequest, MaxCompletionTokensWinsOverMaxTokens) {
  auto r = chat(with(with(chat_base(), "max_tokens", 5), "max_completion_tokens", 7));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->max_tokens, 7);
  r = chat(with(chat_base(), "max_completion_tokens", 9));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->max_tokens, 9);
}

TEST(OpenaiChatRequest, NullFieldsMeanNotGiven) {
  json j = chat_base();
  for (const char* k : {"max_tokens", "temperature", "top_p", "seed", "stop", "n", "logprobs", "top_logprobs",
                        "stream", "stream_options", "user"})
    j[k] = nullptr;
  auto r = chat(j);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_FLOAT_EQ(r->sampling.temperature, 1.0f);
  EXPECT_EQ(r->n, 1);
}

TEST(OpenaiChatRequest, StopAsSingleString) {
  auto r = chat(with(chat_base(), "stop", "###"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->stop, std::vector<std::string>{"###"});
}

TEST(OpenaiChatRequest, IntegralFloatsAreIntegers) {
  auto r = chat(with(with(chat_base(), "max_tokens", 16.0), "n", 2.0));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->max_tokens, 16);
  EXPECT_EQ(r->n, 2);
  expect_bad(chat(with(chat_base(), "max_tokens", 16.5)), "max_tokens", "invalid_type");
}

TEST(OpenaiChatRequest, NegativeSeedKeepsItsBits) {
  auto r = chat(with(chat_base(), "seed", -1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sampling.seed, ~uint64_t{0});
}

TEST(OpenaiChatRequest, TemperatureZeroIsGreedyAndAllowed) {
  auto r = chat(with(chat_base(), "temperature", 0));
  ASSERT_TRUE(r.has_value());
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.0f);
}

TEST(OpenaiChatRequest, OutOfRangeValuesNameTheField) {
  expect_bad(chat(with(chat_base(), "temperature", 2.5)), "temperature");
  expect_bad(chat(with(chat_base(), "temperature", -0.1)), "temperature");
  expect_bad(chat(with(chat_base(), "top_p", 0)), "top_p");
  expect_bad(chat(with(chat_base(), "top_p", 1.5)), "top_p");
  expect_bad(chat(with(chat_base(), "top_k", -2)), "top_k");
  expect_bad(chat(with(chat_base(), "min_p", 1.5)), "min_p");
  expect_bad(chat(with(chat_base(), "presence_penalty", 3)), "presence_penalty");
  expect_bad(chat(with(chat_base(), "frequency_penalty", -2.5)), "frequency_penalty");
  expect_bad(chat(with(chat_base(), "repetition_penalty", 0)), "repetition_penalty");
  expect_bad(chat(with(chat_base(), "n", 0)), "n");
  expect_bad(chat(with(chat_base(), "n", 129)), "n");
  expect_bad(chat(with(chat_base(), "max_tokens", 0)), "max_tokens");
  expect_bad(chat(with(chat_base(), "max_completion_tokens", -3)), "max_completion_tokens");
  expect_bad(chat(with(with(chat_base(), "logprobs", true), "top_logprobs", 21)), "top_logprobs");
  expect_bad(chat(with(chat_base(), "stop", json::array({"a", "b", "c", "d", "e"}))), "stop");
  expect_bad(chat(with(chat_base(), "stop", "")), "stop");
  expect_bad(chat(with(chat_base(), "stop_token_ids", json::array({-1}))), "stop_token_ids");
}

TEST(OpenaiChatRequest, WrongTypesNameTheField) {
  expect_bad(chat(with(chat_base(), "temperature", "hot")), "temperature", "invalid_type");
  expect_bad(chat(with(chat_base(), "temperature", true)), "temperature", "invalid_type");
  expect_bad(chat(with(chat_base(), "top_k", 1.5)), "top_k", "invalid_type");
  expect_bad(chat(with(chat_base(), "seed", "x")), "seed", "invalid_type");
  expect_bad(chat(with(chat_base(), "stop", 5)), "stop", "invalid_type");
  expect_bad(chat(with(chat_base(), "stop", json::array({"a", 1}))), "stop", "invalid_type");
  expect_bad(chat(with(chat_base(), "stream", "yes")), "stream", "invalid_type");
  expect_bad(chat(with(chat_base(), "logprobs", 3)), "logprobs", "invalid_type");
  expect_bad(chat(with(chat_base(), "user", 7)), "user", "invalid_type");
  expect_bad(chat(with(chat_base(), "ignore_eos", "yes")), "ignore_eos", "invalid_type");
  expect_bad(chat(with(chat_base(), "model", 7)), "model", "invalid_type");
  expect_bad(chat(with(chat_base(), "messages", "hi")), "messages", "invalid_type");
  expect_bad(chat(with(with(chat_base(), "stream", true), "stream_options", 1)), "stream_options", "invalid_type");
  expect_bad(chat(with(with(chat_base(), "stream", true), "stream_options", {{"include_usage", "y"}})),
             "stream_options.include_usage", "invalid_type");
}

TEST(OpenaiChatRequest, MissingRequiredFields) {
  json j = chat_base();
  j.erase("model");
  expect_bad(chat(j), "model", "missing_required_parameter");
  j = chat_base();
  j.erase("messages");
  expect_bad(chat(j), "messages", "missing_required_parameter");
  expect_bad(chat(with(chat_base(), "messages", json::array())), "messages");
  expect_bad(chat(with(chat_base(), "messages", json::array({{{"content", "x"}}}))), "messages[0].role",
             "missing_required_parameter");
  expect_bad(chat(with(chat_base(), "messages", json::array({{{"role", "user"}}}))), "messages[0].content",
             "missing_required_parameter");
}

TEST(OpenaiChatRequest, BadMessagesNameThePath) {
  expect_bad(chat(with(chat_base(), "messages", json::array({{{"role", "tool"}, {"content", "x"}}}))),
             "messages[0].role");
  expect_bad(chat(with(chat_base(), "messages",
                       json::array({{{"role", "user"},
                                     {"content", json::array({{{"type", "image_url"}, {"image_url", "u"}}})}}}))),
             "messages[0].content[0].type");
  expect_bad(chat(with(chat_base(), "messages", json::array({{{"role", "user"}, {"content", 3}}}))),
             "messages[0].content", "invalid_type");
  expect_bad(chat(with(chat_base(), "messages", json::array({"hi"}))), "messages[0]", "invalid_type");
}

TEST(OpenaiChatRequest, TopLogprobsNeedsLogprobs) {
  expect_bad(chat(with(chat_base(), "top_logprobs", 2)), "top_logprobs");
  auto r = chat(with(chat_base(), "logprobs", true));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->logprobs);
  EXPECT_TRUE(r->sampling.chosen_logprob);
  EXPECT_EQ(r->sampling.logprobs, 0);
}

TEST(OpenaiChatRequest, StreamOptionsNeedStream) {
  expect_bad(chat(with(chat_base(), "stream_options", {{"include_usage", true}})), "stream_options");
}

TEST(OpenaiChatRequest, MalformedJsonIs400) {
  for (const char* body : {"{", "not json", "", "{\"model\": }"}) {
    auto r = parse_chat_request(body);
    ASSERT_FALSE(r.has_value()) << body;
    EXPECT_EQ(r.error().status, 400);
    EXPECT_EQ(r.error().code, "invalid_json");
    EXPECT_EQ(r.error().type, "invalid_request_error");
    const json b = json::parse(r.error().body());
    EXPECT_TRUE(b["error"]["param"].is_null());
  }
  auto r = parse_chat_request("[1, 2]");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "invalid_json");
}

// Regression (issue 11): a number no double can hold made nlohmann throw out_of_range from the
// parser, which escaped the decoder and became a 500 "dropped without a response".
TEST(OpenaiChatRequest, NumbersBeyondADoubleAre400NamingTheField) {
  const std::string head = R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], )";
  expect_bad(parse_chat_request(head + R"("temperature": 1e309})"), "temperature");
  expect_bad(parse_chat_request(head + R"("top_p": -1e400})"), "top_p");
  // In a field the server does not know, and deep inside an array.
  expect_bad(parse_chat_request(head + R"("no_such_field": 1e309})"), "no_such_field");
  expect_bad(parse_chat_request(R"({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 1e999}]})"),
             "messages[1].content");
  expect_bad(parse_completion_request(R"({"model": "m", "prompt": [[1, 2], [3, 1e309]]})"), "prompt[1][1]");
  const auto r = parse_chat_request(head + R"("temperature": 1e309})");
  EXPECT_NE(r.error().message.find("1e309"), std::string::npos) << r.error().message;
}

TEST(OpenaiChatRequest, ABareHugeNumberIsMalformedJson) {
  for (const char* body : {"1e309", "-1e309", "[1e309]"}) {
    const auto r = parse_completion_request(body);
    ASSERT_FALSE(r.has_value()) << body;
    EXPECT_EQ(r.error().status, 400) << body;
    EXPECT_EQ(r.error().code, "invalid_json") << body;
  }
}

TEST(OpenaiChatRequest, DeeplyNestedJsonIsAnErrorNotACrash) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const auto r = parse_chat_request(R"({"model": "m", "messages": )" + deep + "}");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().status, 400);
}

TEST(OpenaiChatRequest, CacheSaltIsANonEmptyString) {
  auto r = chat(with(chat_base(), "cache_salt", "tenant-7f3a"));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->cache_salt, "tenant-7f3a");
  EXPECT_EQ(chat(chat_base())->cache_salt, "");
  expect_bad(chat(with(chat_base(), "cache_salt", "")), "cache_salt");
  expect_bad(completion(with(completion_base(), "cache_salt", 5)), "cache_salt", "invalid_type");
}

TEST(OpenaiCompletionRequest, PromptShapes) {
  auto r = completion(completion_base());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->endpoint, api_endpoint::completions);
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(r->prompts[0].text, "Once upon");
  EXPECT_FALSE(r->prompts[0].is_tokens);

  r = completion(with(with(completion_base(), "prompt", json::array({"a", "b"})), "n", 2));
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_EQ(r->prompts[1].text, "b");
  EXPECT_EQ(r->choice_count(), 4);

  r = completion(with(completion_base(), "prompt", json::array({1, 2, 3})));
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_TRUE(r->prompts[0].is_tokens);
  EXPECT_EQ(r->prompts[0].token_ids, (std::vector<int32_t>{1, 2, 3}));

  r = completion(with(completion_base(), "prompt", json::array({json::array({1, 2}), json::array({3})})));
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_EQ(r->prompts[1].token_ids, std::vector<int32_t>{3});

  r = completion(with(completion_base(), "prompt", ""));
  ASSERT_TRUE(r.has_value());  // OpenAI accepts an empty prompt
}

TEST(OpenaiCompletionRequest, BadPrompts) {
  json j = completion_base();
  j.erase("prompt");
  expect_bad(completion(j), "prompt", "missing_required_parameter");
  expect_bad(completion(with(completion_base(), "prompt", json::array())), "prompt");
  expect_bad(completion(with(completion_base(), "prompt", json::array({"a", 1}))), "prompt", "invalid_type");
  expect_bad(completion(with(completion_base(), "prompt", json::array({1, "a"}))), "prompt", "invalid_type");
  expect_bad(completion(with(completion_base(), "prompt", json::array({1, -5}))), "prompt");
  expect_bad(completion(with(completion_base(), "prompt", json::array({json::array()}))), "prompt");
  expect_bad(completion(with(completion_base(), "prompt", 42)), "prompt", "invalid_type");
}

TEST(OpenaiCompletionRequest, LogprobsIsAnInteger) {
  auto r = completion(with(completion_base(), "logprobs", 3));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->sampling.logprobs, 3);
  r = completion(with(completion_base(), "logprobs", 0));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->sampling.logprobs, 0);
  expect_bad(completion(with(completion_base(), "logprobs", 6)), "logprobs");
  expect_bad(completion(with(completion_base(), "logprobs", true)), "logprobs", "invalid_type");
}

TEST(OpenaiCompletionRequest, MaxCompletionTokensIsChatOnly) {
  auto r = completion(with(with(completion_base(), "max_tokens", 4), "max_completion_tokens", 9));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->max_tokens, 4);
}

TEST(OpenaiCompletionRequest, ChoiceFanOutIsBounded) {
  json prompts = json::array();
  for (int i = 0; i < 3; ++i) prompts.push_back("p");
  request_limits limits;
  limits.max_choices = 5;
  auto r = parse_completion_request(with(with(completion_base(), "prompt", prompts), "n", 2).dump(), limits);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().param, "n");
}

TEST(OpenaiErrors, StatusesAndBodies) {
  const api_error nf = model_not_found("gpt-x");
  EXPECT_EQ(nf.status, 404);
  json b = json::parse(nf.body());
  EXPECT_EQ(b["error"]["code"], "model_not_found");
  EXPECT_EQ(b["error"]["type"], "invalid_request_error");
  EXPECT_EQ(b["error"]["param"], "model");
  EXPECT_NE(b["error"]["message"].get<std::string>().find("gpt-x"), std::string::npos);

  const api_error big = body_too_large(1024);
  EXPECT_EQ(big.status, 413);
  b = json::parse(big.body());
  EXPECT_EQ(b["error"]["code"], "request_too_large");
  EXPECT_TRUE(b["error"]["param"].is_null());

  const api_error ctx = context_length_exceeded(4000, 200, 4096);
  EXPECT_EQ(ctx.status, 400);
  b = json::parse(ctx.body());
  EXPECT_EQ(b["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(b["error"]["param"], "messages");
  const std::string msg = b["error"]["message"];
  EXPECT_NE(msg.find("4096"), std::string::npos);
  EXPECT_NE(msg.find("4200"), std::string::npos);

  const api_error nr = not_ready("loading");
  EXPECT_EQ(nr.status, 503);
  EXPECT_EQ(json::parse(nr.body())["error"]["type"], "server_error");

  const api_error in = internal_error("boom");
  EXPECT_EQ(in.status, 500);
  EXPECT_EQ(json::parse(in.body())["error"]["code"], "internal_error");
}

TEST(OpenaiErrors, TroupeErrorsMapToStatuses) {
  EXPECT_EQ(to_api_error(error(errc::invalid_argument, "x")).status, 400);
  EXPECT_EQ(to_api_error(error(errc::not_found, "x")).status, 404);
  EXPECT_EQ(to_api_error(error(errc::context_overflow, "x")).code, "context_length_exceeded");
  EXPECT_EQ(to_api_error(error(errc::no_kv_blocks, "x")).status, 503);
  EXPECT_EQ(to_api_error(error(errc::internal, "x")).status, 500);
}

TEST(OpenaiErrors, BodyWithInvalidUtf8DoesNotThrow) {
  const api_error e = invalid_request("bad \xff byte", "stop");
  EXPECT_TRUE(json::accept(e.body()));
}

TEST(OpenaiFitContext, BudgetAndOverflow) {
  auto r = fit_context(100, std::nullopt, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value(), 3996);
  r = fit_context(100, 50, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value(), 50);
  r = fit_context(4000, 200, 4096);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "context_length_exceeded");
  r = fit_context(4096, std::nullopt, 4096, "prompt");  // no room for a single token
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().param, "prompt");
}

}  // namespace
}  // namespace troupe
