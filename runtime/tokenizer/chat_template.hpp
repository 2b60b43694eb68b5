#pragma once
// Chat templates: turns a conversation into the prompt text a model family was trained on.
//
// troupe does not run Jinja. It recognises the common families from their template text (GGUF
// tokenizer.chat_template, tokenizer_config.json) and renders them natively, as llama.cpp does.
//
// BOS: by default the first BOS is left to the tokenizer (encode_prompt adds it when the model
// asks), as llama.cpp does, so the text never holds the BOS that the tokenizer would add again.
// Special tokens inside the text (<|im_start|>, later "<s>" of Llama-2 turns, ...) are plain
// text: encode the result with parse_special = true so that they become their ids.

#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/core/error.hpp"

namespace troupe {

/// One message of a conversation; role is "system", "user" or "assistant".
struct chat_message {
  std::string role;
  std::string content;
};

/// The prompt formats troupe renders.
enum class chat_format { llama2, llama3, mistral, chatml, none };

/// What a template adds beyond its format.
struct chat_options {
  /// System prompt inserted when the first message is not a system message ("" = none), as
  /// SmolLM2's and Qwen2's templates do.
  std::string default_system;
  /// Write the first BOS as text ("<s>", "<|begin_of_text|>"), as Hugging Face's
  /// apply_chat_template does; off by default because the tokenizer adds it (see above).
  bool bos_text = false;
};

/// Picks the format from the model's chat template text (Jinja source from GGUF tokenizer.chat_template or tokenizer_config.json) by its markers, else from special tokens in the vocabulary, else `none`.
chat_format detect_chat_format(std::string_view template_text,
                               const std::function<bool(std::string_view)>& vocab_has_token = {});

/// Options a template implies: its default system prompt, found as the literal text of a
/// "<|im_start|>system\n...<|im_end|>" string in the template (empty if none).
chat_options chat_options_from_template(std::string_view template_text);

/// Renders messages as the model expects, with the generation prompt (assistant turn opened) when asked. Returns invalid_argument for an unknown role or an empty conversation.
///
/// llama2 and mistral put each system prompt into the next user turn and need user and
/// assistant turns to alternate, starting with the user (their published templates raise
/// otherwise); their prompt already ends in "[/INST]", so add_generation_prompt adds nothing.
/// llama2 and llama3 trim the whitespace around each content, as their templates do.
/// `none` (a model without a template) gives the contents one per line, without markers.
expected<std::string> render_chat(chat_format fmt, std::span<const chat_message> messages,
                                  bool add_generation_prompt = true,
                                  const chat_options& options = {});

/// "llama2", "llama3", "mistral", "chatml" or "none".
std::string_view to_string(chat_format fmt);

}  // namespace troupe
