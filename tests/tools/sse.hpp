#pragma once
// Reads an OpenAI server-sent-event stream as a client sees it.

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

namespace troupe::test {

/// The text of choice 0 across the stream's chunks (delta.content for chat, text for completions),
/// and whether the stream ended with "data: [DONE]".
struct sse_result {
  std::string text;
  bool done = false;
};

inline sse_result read_sse(const std::string& body, bool chat) {
  std::istringstream in(body);
  std::string line;
  sse_result r;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      r.done = true;
      continue;
    }
    const auto j = nlohmann::json::parse(data, nullptr, false);
    if (!j.is_object() || !j.contains("choices") || j["choices"].empty()) continue;
    const auto& c = j["choices"][0];
    if (chat) {
      if (c.contains("delta") && c["delta"].contains("content") && c["delta"]["content"].is_string())
        r.text += c["delta"]["content"].get<std::string>();
    } else if (c.contains("text") && c["text"].is_string()) {
      r.text += c["text"].get<std::string>();
    }
  }
  return r;
}

}  // namespace troupe::test
