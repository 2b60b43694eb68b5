#include "runtime/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <string>

namespace troupe {

void init_logging(std::string_view level, std::string_view fallback) {
  std::string name(level);
  if (name.empty()) {
    const char* env = std::getenv("TROUPE_LOG_LEVEL");
    name = env ? env : std::string(fallback);
  }
  auto logger = spdlog::stderr_color_mt("troupe");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_level(spdlog::level::from_str(name));
}

}  // namespace troupe
