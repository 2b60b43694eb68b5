#pragma once
// The embedding API: start troupe inside your own C++ program and generate without HTTP. The same
// actor topology as `troupe serve` (shards, schedulers, router) runs in-process, so concurrent calls
// from several threads are batched together.
//
//   auto rt = troupe::embedded_runtime::start(config);           // models from a serve_config
//   auto out = (*rt)->generate("stories", "Once upon a time", {}, [](std::string_view text, int32_t) {
//     std::cout << text << std::flush;                           // each piece as it is sampled
//     return true;                                               // false cancels
//   });
//   auto s = (*rt)->open_stream("stories", "Tom", {});          // or pull events one by one
//   while (auto ev = (*s)->next()) { ... }

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/serve_config.hpp"
#include "runtime/core/error.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/serving/scheduler_policy.hpp"

namespace troupe {

/// Settings of one generation.
struct generate_options {
  int32_t max_tokens = 128;             ///< tokens to generate at most (also capped by the context)
  sampling_params sampling;             ///< temperature, top-k/p, seed, ... (defaults: plain sampling)
  std::vector<std::string> stop;        ///< stop strings (not included in the text)
  bool add_bos = true;                  ///< encode the prompt with BOS when the model asks for it
};

/// A finished generation.
struct generation {
  std::string text;                     ///< everything generated (stop strings cut off)
  std::vector<int32_t> tokens;          ///< generated ids (a final stop token excluded)
  std::string finish_reason;            ///< "stop", "length" or "cancelled"
  usage_counts usage;
};

/// Pulls one request's events; next() blocks until the next event (nullopt after the last one).
class token_stream {
 public:
  virtual ~token_stream() = default;
  /// The next event (text delta, token, finish); nullopt once the request has finished.
  virtual std::optional<token_event> next() = 0;
  /// Ends the request now; next() then returns the cancelled event and finishes.
  virtual void cancel() = 0;
};

class embedded_runtime {
 public:
  /// Loads every model of cfg (cfg.server is ignored: no HTTP) and starts the actors.
  static expected<std::unique_ptr<embedded_runtime>> start(const serve_config& cfg);
  ~embedded_runtime();
  embedded_runtime(const embedded_runtime&) = delete;
  embedded_runtime& operator=(const embedded_runtime&) = delete;

  /// Names of the hosted models.
  std::vector<std::string> models() const;
  /// Generates from a text prompt, blocking the calling thread; on_token gets each piece of text
  /// (and its token id) as soon as it is sampled and may return false to cancel. Thread-safe.
  expected<generation> generate(std::string_view model, std::string_view prompt, const generate_options& opts,
                                const std::function<bool(std::string_view text, int32_t token)>& on_token = {});
  /// Starts a generation whose events the caller pulls from the returned stream (from the thread
  /// that opened it).
  expected<std::unique_ptr<token_stream>> open_stream(std::string_view model, std::string_view prompt,
                                                      const generate_options& opts);

  struct impl;

 private:
  explicit embedded_runtime(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
