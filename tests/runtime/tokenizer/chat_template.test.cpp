#include "runtime/tokenizer/chat_template.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace troupe {
namespace {

using msgs = std::vector<chat_message>;

std::string render_ok(chat_format fmt, const msgs& m, bool gen = true, const chat_options& o = {}) {
  auto r = render_chat(fmt, m, gen, o);
  EXPECT_TRUE(r) << (r ? "" : r.error().what());
  return r ? *r : std::string();
}

nlohmann::json load_smollm2_chat() {
  std::ifstream in(std::string(TROUPE_SHARED_DIR) + "/golden/tokenizers/smollm2_chat.json");
  EXPECT_TRUE(in.good()) << "missing golden file smollm2_chat.json";
  return in.good() ? nlohmann::json::parse(in) : nlohmann::json();
}

// Published templates, abridged to the parts that carry each family's markers.
constexpr const char* llama2_template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
constexpr const char* llama3_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
constexpr const char* mistral_template =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";
// Qwen2-style: the default system prompt in an escaped literal, as tokenizer_config.json holds it.
constexpr const char* qwen_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
// ChatML that only frames the caller's system message: no default prompt.
constexpr const char* framing_only_template =
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}";

// ---- rendering ----------------------------------------------------------------------------------

TEST(ChatTemplate, ChatmlRendersTurnsAndGenerationPrompt) {
  const msgs m = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  EXPECT_EQ(render_ok(chat_format::chatml, m),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render_ok(chat_format::chatml, {{"user", " x "}}, false),
            "<|im_start|>user\n x <|im_end|>\n");  // ChatML keeps content as is
}

TEST(ChatTemplate, DefaultSystemIsInsertedOnlyWithoutASystemMessage) {
  chat_options o;
  o.default_system = "You are SmolLM.";
  EXPECT_EQ(render_ok(chat_format::chatml, {{"user", "Hi"}}, true, o),
            "<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render_ok(chat_format::chatml, {{"system", "Mine."}, {"user", "Hi"}}, false, o),
            "<|im_start|>system\nMine.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Llama3RendersHeadersAndTrimsContent) {
  const msgs m = {{"system", "Be brief. "}, {"user", "\nHi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  const std::string body =
      "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>";
  const std::string gen = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(render_ok(chat_format::llama3, m), body + gen);
  EXPECT_EQ(render_ok(chat_format::llama3, m, false), body);
  chat_options o;
  o.bos_text = true;
  EXPECT_EQ(render_ok(chat_format::llama3, m, true, o), "<|begin_of_text|>" + body + gen);
}

TEST(ChatTemplate, Llama2PutsSystemInFirstInstAndBosBetweenTurns) {
  const msgs m = {{"system", "Be brief."}, {"user", "Hi "}, {"assistant", " Hello!"}, {"user", "Bye"}};
  const std::string body =
      "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]";
  EXPECT_EQ(render_ok(chat_format::llama2, m), body);
  EXPECT_EQ(render_ok(chat_format::llama2, m, false), body);  // the prompt is already open
  chat_options o;
  o.bos_text = true;
  EXPECT_EQ(render_ok(chat_format::llama2, m, true, o), "<s>" + body);
  EXPECT_EQ(render_ok(chat_format::llama2, {{"user", "Hi"}}), "[INST] Hi [/INST]");
}

TEST(ChatTemplate, MistralV1JoinsSystemToTheUserTurn) {
  const msgs m = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  const std::string body = "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]";
  EXPECT_EQ(render_ok(chat_format::mistral, m), body);
  chat_options o;
  o.bos_text = true;
  EXPECT_EQ(render_ok(chat_format::mistral, m, true, o), "<s>" + body);
}

TEST(ChatTemplate, InstFormatsRejectTurnsThatDoNotAlternate) {
  for (auto fmt : {chat_format::llama2, chat_format::mistral}) {
    for (const msgs& m : {msgs{{"assistant", "a"}, {"user", "u"}}, msgs{{"user", "u"}, {"user", "v"}},
                          msgs{{"user", "u"}, {"assistant", "a"}, {"assistant", "b"}},
                          msgs{{"system", "s"}}}) {
      auto r = render_chat(fmt, m);
      ASSERT_FALSE(r) << to_string(fmt);
      EXPECT_EQ(r.error().code(), errc::invalid_argument);
    }
  }
}

TEST(ChatTemplate, NoneGivesContentsOnePerLine) {
  EXPECT_EQ(render_ok(chat_format::none, {{"system", "s"}, {"user", "Once upon a time"}}),
            "s\nOnce upon a time");
}

TEST(ChatTemplate, RejectsEmptyConversationAndUnknownRole) {
  for (auto fmt : {chat_format::llama2, chat_format::llama3, chat_format::mistral,
                   chat_format::chatml, chat_format::none}) {
    auto empty = render_chat(fmt, msgs{});
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().code(), errc::invalid_argument);
    auto bad = render_chat(fmt, msgs{{"user", "hi"}, {"robot", "beep"}});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), errc::invalid_argument);
    EXPECT_NE(bad.error().message().find("robot"), std::string::npos);
  }
}

TEST(ChatTemplate, FormatNames) {
  EXPECT_EQ(to_string(chat_format::llama2), "llama2");
  EXPECT_EQ(to_string(chat_format::llama3), "llama3");
  EXPECT_EQ(to_string(chat_format::mistral), "mistral");
  EXPECT_EQ(to_string(chat_format::chatml), "chatml");
  EXPECT_EQ(to_string(chat_format::none), "none");
}

// ---- detection ----------------------------------------------------------------------------------

TEST(ChatTemplate, DetectsFormatsFromPublishedTemplates) {
  EXPECT_EQ(detect_chat_format(llama2_template), chat_format::llama2);
  EXPECT_EQ(detect_chat_format(llama3_template), chat_format::llama3);
  EXPECT_EQ(detect_chat_format(mistral_template), chat_format::mistral);
  EXPECT_EQ(detect_chat_format(qwen_template), chat_format::chatml);
  const auto golden = load_smollm2_chat();
  EXPECT_EQ(detect_chat_format(golden.value("chat_template", "")), chat_format::chatml);
}

TEST(ChatTemplate, FallsBackToVocabularyThenNone) {
  const std::set<std::string, std::less<>> chatml_vocab = {"<|im_start|>", "<|im_end|>"};
  auto has = [&](std::string_view t) { return chatml_vocab.count(t) > 0; };
  EXPECT_EQ(detect_chat_format("", has), chat_format::chatml);
  EXPECT_EQ(detect_chat_format("{{ unknown }}", [](std::string_view t) {
              return t == "<|start_header_id|>";
            }), chat_format::llama3);
  EXPECT_EQ(detect_chat_format("", [](std::string_view t) { return t == "[INST]"; }),
            chat_format::mistral);
  EXPECT_EQ(detect_chat_format("", [](std::string_view) { return false; }), chat_format::none);
  EXPECT_EQ(detect_chat_format(""), chat_format::none);
  // The template wins over the vocabulary.
  EXPECT_EQ(detect_chat_format(llama3_template, has), chat_format::llama3);
}

TEST(ChatTemplate, ExtractsTheDefaultSystemPrompt) {
  const auto golden = load_smollm2_chat();
  EXPECT_EQ(chat_options_from_template(golden.value("chat_template", "")).default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(chat_options_from_template(qwen_template).default_system, "You are a helpful assistant.");
  EXPECT_EQ(chat_options_from_template(framing_only_template).default_system, "");
  EXPECT_EQ(chat_options_from_template(llama3_template).default_system, "");
  EXPECT_EQ(chat_options_from_template("").default_system, "");
}

// ---- golden: SmolLM2's published template, rendered by Hugging Face ----------------------------

TEST(ChatTemplate, ChatmlMatchesSmolLM2GoldenTexts) {
  const auto golden = load_smollm2_chat();
  ASSERT_TRUE(golden.contains("conversations"));
  const std::string tmpl = golden.at("chat_template");
  const auto fmt = detect_chat_format(tmpl);
  ASSERT_EQ(fmt, chat_format::chatml);
  const auto options = chat_options_from_template(tmpl);
  size_t checked = 0;
  for (const auto& conv : golden.at("conversations")) {
    msgs m;
    for (const auto& msg : conv.at("messages")) m.push_back({msg.at("role"), msg.at("content")});
    const bool gen = conv.value("add_generation_prompt", true);
    auto text = render_chat(fmt, m, gen, options);
    ASSERT_TRUE(text) << text.error().what();
    EXPECT_EQ(*text, conv.at("text").get<std::string>()) << conv.value("name", "");
    ++checked;
  }
  EXPECT_GE(checked, 3u);
}

}  // namespace
}  // namespace troupe
