// The chat template code (runtime/tokenizer/chat_template.cpp): format detection and default-system
// extraction from arbitrary template text (a GGUF or tokenizer_config.json carries it), and rendering
// of arbitrary conversations in every format.
//
// Input: NUL-separated fields: the template text, then role, content, role, content, ...; the low bits
// of the last byte choose add_generation_prompt and bos_text.
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "runtime/tokenizer/chat_template.hpp"

using namespace troupe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> fields;
  for (size_t at = 0;;) {
    const size_t nul = in.find('\0', at);
    fields.push_back(in.substr(at, nul == std::string_view::npos ? std::string_view::npos : nul - at));
    if (nul == std::string_view::npos) break;
    at = nul + 1;
  }
  const std::string_view tmpl = fields[0];
  const chat_format detected = detect_chat_format(tmpl, [&](std::string_view tok) { return tmpl.find(tok) != tmpl.npos; });
  chat_options options = chat_options_from_template(tmpl);
  options.bos_text = (data[size - 1] & 2) != 0;
  std::vector<chat_message> messages;
  for (size_t i = 1; i + 1 < fields.size(); i += 2) messages.push_back({std::string(fields[i]), std::string(fields[i + 1])});
  const bool generation_prompt = (data[size - 1] & 1) != 0;
  (void)render_chat(detected, messages, generation_prompt, options);
  for (auto fmt : {chat_format::llama2, chat_format::llama3, chat_format::mistral, chat_format::chatml, chat_format::none})
    (void)render_chat(fmt, messages, generation_prompt, options);
  return 0;
}
