#pragma once
// Logging goes to stderr through spdlog. The level comes from --log-level or $TROUPE_LOG_LEVEL
// (trace, debug, info, warn, error, off); default "warn" for the command line tools.

#include <spdlog/spdlog.h>

#include <string_view>

namespace troupe {

/// Sets up the stderr logger. An empty level reads $TROUPE_LOG_LEVEL, else uses fallback.
void init_logging(std::string_view level = {}, std::string_view fallback = "warn");

}  // namespace troupe
