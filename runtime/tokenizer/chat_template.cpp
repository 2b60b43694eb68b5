#include "runtime/tokenizer/chat_template.hpp"

#include <optional>
#include <vector>

namespace troupe {

namespace {

bool contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\f\v";
  const size_t first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

bool known_role(std::string_view role) {
  return role == "system" || role == "user" || role == "assistant";
}

// The body of a Jinja string literal starting at pos, up to (not including) stop, with its
// escapes undone; nullopt if the literal closes (an unescaped quote) before stop appears.
std::optional<std::string> literal_until(std::string_view text, size_t pos, char quote,
                                         std::string_view stop) {
  std::string out;
  while (pos < text.size()) {
    if (text.compare(pos, stop.size(), stop) == 0) return out;
    const char c = text[pos];
    if (c == quote) return std::nullopt;
    if (c == '\\' && pos + 1 < text.size()) {
      const char e = text[pos + 1];
      out += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      pos += 2;
      continue;
    }
    out += c;
    ++pos;
  }
  return std::nullopt;
}

// System turns of llama2/mistral ride on the next user turn; one pass collects (system, user,
// assistant) turns and checks the user/assistant alternation their templates demand.
struct inst_turn {
  std::string system;
  std::string_view user;
  std::optional<std::string_view> assistant;
};

expected<std::vector<inst_turn>> inst_turns(chat_format fmt,
                                            std::span<const chat_message> messages) {
  std::vector<inst_turn> turns;
  std::string pending_system;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "system") {
      if (!pending_system.empty()) pending_system += "\n\n";
      pending_system += m.content;
    } else if (m.role == "user") {
      if (!turns.empty() && !turns.back().assistant) {
        return make_error(errc::invalid_argument,
                          std::string(to_string(fmt)) + " chat needs user and assistant turns to "
                          "alternate: message " + std::to_string(i) + " is a second user turn");
      }
      turns.push_back({std::move(pending_system), m.content, std::nullopt});
      pending_system.clear();
    } else {  // assistant
      if (turns.empty() || turns.back().assistant) {
        return make_error(errc::invalid_argument,
                          std::string(to_string(fmt)) + " chat needs user and assistant turns to "
                          "alternate, starting with user: message " + std::to_string(i) +
                          " is an assistant turn without a user turn before it");
      }
      turns.back().assistant = m.content;
    }
  }
  if (!pending_system.empty()) {
    return make_error(errc::invalid_argument,
                      std::string(to_string(fmt)) + " chat needs a user message after each system message");
  }
  return turns;
}

std::string render_llama2(const std::vector<inst_turn>& turns, const chat_options& options) {
  std::string out;
  for (size_t i = 0; i < turns.size(); ++i) {
    const auto& t = turns[i];
    // Every turn is "<s>[INST] ... [/INST] ... </s>"; only the first BOS is the tokenizer's.
    if (i > 0 || options.bos_text) out += "<s>";
    out += "[INST] ";
    if (!t.system.empty()) {
      out += "<<SYS>>\n";
      out += trim(t.system);
      out += "\n<</SYS>>\n\n";
    }
    out += trim(t.user);
    out += " [/INST]";
    if (t.assistant) {
      out += ' ';
      out += trim(*t.assistant);
      out += " </s>";
    }
  }
  return out;
}

std::string render_mistral(const std::vector<inst_turn>& turns, const chat_options& options) {
  std::string out = options.bos_text ? "<s>" : "";
  for (const auto& t : turns) {
    out += "[INST] ";
    if (!t.system.empty()) {
      out += t.system;
      out += "\n\n";
    }
    out += t.user;
    out += " [/INST]";
    if (t.assistant) {
      out += *t.assistant;
      out += "</s>";
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(chat_format fmt) {
  switch (fmt) {
    case chat_format::llama2: return "llama2";
    case chat_format::llama3: return "llama3";
    case chat_format::mistral: return "mistral";
    case chat_format::chatml: return "chatml";
    case chat_format::none: return "none";
  }
  return "none";
}

chat_format detect_chat_format(std::string_view template_text,
                               const std::function<bool(std::string_view)>& vocab_has_token) {
  if (contains(template_text, "<|im_start|>")) return chat_format::chatml;
  if (contains(template_text, "<|start_header_id|>")) return chat_format::llama3;
  if (contains(template_text, "[INST]")) {
    // Both families use [INST]; only Llama-2 wraps the system prompt in <<SYS>>.
    return contains(template_text, "<<SYS>>") ? chat_format::llama2 : chat_format::mistral;
  }
  if (vocab_has_token) {
    if (vocab_has_token("<|im_start|>")) return chat_format::chatml;
    if (vocab_has_token("<|start_header_id|>")) return chat_format::llama3;
    if (vocab_has_token("[INST]")) return chat_format::mistral;  // a control token from v3 on
  }
  return chat_format::none;
}

chat_options chat_options_from_template(std::string_view template_text) {
  chat_options options;
  constexpr std::string_view marker = "<|im_start|>system";
  for (size_t at = template_text.find(marker); at != std::string_view::npos;
       at = template_text.find(marker, at + 1)) {
    // The quote that opened the literal holding the marker.
    const size_t quote_at = template_text.find_last_of("'\"", at);
    if (quote_at == std::string_view::npos) continue;
    size_t pos = at + marker.size();
    // A newline, real or as the escape "\n" (tokenizer_config.json templates carry either).
    if (template_text.compare(pos, 1, "\n") == 0) pos += 1;
    else if (template_text.compare(pos, 2, "\\n") == 0) pos += 2;
    else continue;
    // A default prompt is literal text up to <|im_end|> inside the same string; a template that
    // only frames the caller's system message closes the literal first (`'...system\n' + ...`).
    auto text = literal_until(template_text, pos, template_text[quote_at], "<|im_end|>");
    if (text && !text->empty()) {
      options.default_system = std::move(*text);
      break;
    }
  }
  return options;
}

expected<std::string> render_chat(chat_format fmt, std::span<const chat_message> messages,
                                  bool add_generation_prompt, const chat_options& options) {
  if (messages.empty()) return make_error(errc::invalid_argument, "chat conversation is empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!known_role(messages[i].role)) {
      return make_error(errc::invalid_argument,
                        "chat message " + std::to_string(i) + " has unknown role '" +
                            messages[i].role + "' (expected system, user or assistant)");
    }
  }
  std::vector<chat_message> with_default;
  if (!options.default_system.empty() && messages.front().role != "system") {
    with_default.reserve(messages.size() + 1);
    with_default.push_back({"system", options.default_system});
    with_default.insert(with_default.end(), messages.begin(), messages.end());
    messages = with_default;
  }

  std::string out;
  switch (fmt) {
    case chat_format::chatml:
      for (const auto& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case chat_format::llama3:
      if (options.bos_text) out += "<|begin_of_text|>";
      for (const auto& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
        out += trim(m.content);
        out += "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case chat_format::llama2:
    case chat_format::mistral: {
      auto turns = inst_turns(fmt, messages);
      if (!turns) return unexpected{turns.error()};
      return fmt == chat_format::llama2 ? render_llama2(*turns, options)
                                        : render_mistral(*turns, options);
    }
    case chat_format::none:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i > 0) out += '\n';
        out += messages[i].content;
      }
      return out;
  }
  return make_error(errc::internal, "render_chat: unhandled chat_format");
}

}  // namespace troupe
