// Memory per request stays flat (issue 11): every generation through the in-process topology
// (router, relay, scheduler, shard), completed or cancelled, gives back what it took. Before the fix
// each request's relay stayed in memory through the monitors it left on the scheduler and the
// router: about 1.2 KB per request.

#include <gtest/gtest.h>
#include <malloc.h>

#include "actors/embedded.hpp"

namespace troupe {
namespace {

/// Bytes the allocator has handed out and not had back, over all arenas and mmapped chunks.
int64_t heap_in_use() {
  const struct mallinfo2 mi = ::mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

TEST(RequestMemory, ThousandsOfRequestsLeaveTheHeapFlat) {
  serve_config cfg;
  model_config m;
  m.name = "stories";
  m.path = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
  m.threads = 1;
  m.kv_cache_mb = 16;
  cfg.models.push_back(m);
  auto rt = embedded_runtime::start(cfg);
  ASSERT_TRUE(rt) << rt.error().what();

  generate_options opts;
  opts.max_tokens = 3;
  opts.sampling.temperature = 0.0f;
  // Completed, cancelled from the callback, and cancelled through a stream, in turn.
  auto one_round = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::string prompt = "Once upon a time " + std::to_string(i % 50);
      if (i % 3 == 0) {
        auto out = (*rt)->generate("stories", prompt, opts);
        ASSERT_TRUE(out) << out.error().what();
      } else if (i % 3 == 1) {
        auto out = (*rt)->generate("stories", prompt, opts, [](std::string_view, int32_t) { return false; });
        ASSERT_TRUE(out) << out.error().what();
      } else {
        auto s = (*rt)->open_stream("stories", prompt, opts);
        ASSERT_TRUE(s) << s.error().what();
        (*s)->cancel();
        while ((*s)->next()) {
        }
      }
    }
  };
  one_round(600);  // warm-up: the prefix cache, pools and maps reach their size
  const int64_t before = heap_in_use();
  constexpr int requests = 3000;
  one_round(requests);
  const int64_t grown = heap_in_use() - before;
  // 1.2 KB per request before the fix (3.6 MB here); allow 64 bytes per request of noise.
  EXPECT_LT(grown, 64 * requests) << "the heap grew by " << grown << " bytes over " << requests
                                  << " requests (" << grown / requests << " per request)";
}

}  // namespace
}  // namespace troupe
