// The OpenAI request decoder (runtime/api/openai.cpp): every body goes through both
// parse_chat_request and parse_completion_request (messages, content parts, prompts as text or ids,
// sampling fields, stop, n, logprobs, stream_options). An accepted conversation is rendered in each
// chat format, as the gateway does next; a rejected one must still give an error body that is JSON.
#include <nlohmann/json.hpp>

#include "fuzz/fuzz_support.hpp"
#include "runtime/api/openai.hpp"

using namespace troupe;

namespace {

void check_error(const api_error& e) {
  if (e.status < 400 || e.status > 599) std::abort();
  if (!nlohmann::json::accept(e.body())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto chat = parse_chat_request(body); chat) {
    for (auto fmt : {chat_format::llama2, chat_format::llama3, chat_format::mistral, chat_format::chatml,
                     chat_format::none})
      (void)render_chat(fmt, chat->messages);
  } else {
    check_error(chat.error());
  }
  if (auto completion = parse_completion_request(body); !completion) check_error(completion.error());
  return 0;
}
