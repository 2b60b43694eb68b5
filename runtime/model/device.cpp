// Device names ("cpu", "cuda:N"), apart from the model runner so that the config parsers (and their
// fuzz harnesses) link without the model.
#include <charconv>

#include "runtime/model/model_runner.hpp"

namespace troupe {

std::string device_spec::to_string() const {
  return kind == kind_t::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

expected<device_spec> parse_device(std::string_view text) {
  auto bad = [&] {
    return make_error(errc::invalid_argument,
                      "unknown device '" + std::string(text) + "' (expected cpu, cuda or cuda:N)");
  };
  if (text == "cpu") return device_spec{};
  if (text == "cuda") return device_spec{device_spec::kind_t::cuda, 0};
  constexpr std::string_view prefix = "cuda:";
  if (text.substr(0, prefix.size()) != prefix) return bad();
  const std::string_view digits = text.substr(prefix.size());
  int index = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || index < 0) return bad();
  return device_spec{device_spec::kind_t::cuda, index};
}

}  // namespace troupe
