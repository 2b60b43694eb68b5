#include "actors/topology.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <cstdlib>

#include "actors/messages.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"
#include "runtime/core/log.hpp"

namespace troupe {
namespace {

size_t caf_threads() {
  if (const char* env = std::getenv("TROUPE_CAF_THREADS"); env && std::atoi(env) > 0) return static_cast<size_t>(std::atoi(env));
  return 1;
}

}  // namespace

void configure_actor_system(caf::actor_system_config& cfg) {
  register_message_types(cfg);
  // CAF 0.17's idle scheduler threads sleep up to 10 ms between polls once idle for a while; every hop
  // of a decode step (scheduler -> shard -> scheduler -> request) could wait that long.
  cfg.set("scheduler.max-threads", caf_threads());
  cfg.set("work-stealing.aggressive-poll-attempts", size_t{1});
  cfg.set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::microseconds(50)});
  cfg.set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::microseconds(100)});
}

engine_options replica_engine_options(const model_config& mc) {
  engine_options eo;
  eo.model_path = mc.path;
  eo.tokenizer_path = mc.tokenizer;
  eo.model.threads = mc.threads;
  eo.model.repack = mc.repack;
  eo.device = mc.device;
  eo.kv.max_bytes = static_cast<size_t>(mc.kv_cache_mb) << 20;
  eo.kv.n_blocks = mc.kv_blocks;
  eo.kv_full_contexts = mc.max_num_seqs;  // room for many sequences, within the byte budget
  return eo;
}

scheduler_options replica_scheduler_options(const model_config& mc) {
  scheduler_options so;
  so.policy.max_num_seqs = mc.max_num_seqs;
  so.policy.max_num_batched_tokens = mc.max_num_batched_tokens;
  so.enable_prefix_caching = mc.enable_prefix_caching;
  return so;
}

void local_topology::shutdown() {
  for (auto it = actors.rbegin(); it != actors.rend(); ++it) caf::anon_send_exit(*it, caf::exit_reason::user_shutdown);
  actors.clear();
  router = router_actor{};
}

expected<local_topology> spawn_topology(caf::actor_system& sys, const serve_config& cfg) {
  local_topology topo;
  std::vector<replica_entry> replicas;
  auto fail = [&](const std::string& model, const error& e) {
    topo.shutdown();
    return make_error(e.code(), "model '" + model + "': " + e.message());
  };
  // A bad routing config fails before any model is loaded.
  TROUPE_TRY(validate(cfg.routing));
  for (const model_config& mc : cfg.models) {
    const engine_options eo = replica_engine_options(mc);
    // Each replica loads its own engine (its own KV pool and threads); the first one's tokenizer and
    // context length describe the model to the gateway.
    std::shared_ptr<const tokenizer> tok;
    int64_t context_length = 0;
    for (int r = 0; r < mc.replicas; ++r) {
      auto eng = engine::load(eo);
      if (!eng) return fail(mc.name, eng.error());
      if (!tok) {
        tok = (*eng)->shared_tokenizer();
        context_length = (*eng)->hparams().context_length;
      }
      const shard_actor shard = spawn_shard(sys, std::make_unique<shard_runner>(std::move(*eng)));
      topo.actors.push_back(caf::actor_cast<caf::actor>(shard));
      auto sched = spawn_scheduler(sys, shard, tok, replica_scheduler_options(mc));
      if (!sched) return fail(mc.name, sched.error());
      topo.actors.push_back(caf::actor_cast<caf::actor>(*sched));
      replicas.push_back(replica_entry{mc.name, mc.name + "/" + std::to_string(r), *sched});
    }
    topo.models.push_back(served_model{mc.name, tok, context_length});
    spdlog::info("topology: model '{}' from {} ({} replica{})", mc.name, mc.path, mc.replicas, mc.replicas == 1 ? "" : "s");
  }
  auto router = spawn_router(sys, std::move(replicas), cfg.routing);
  if (!router) {
    topo.shutdown();
    return unexpected{router.error()};
  }
  topo.router = *router;
  spdlog::info("topology: routing {} (load_factor {}, prefix_blocks {}, virtual_nodes {})", cfg.routing.strategy,
               cfg.routing.load_factor, cfg.routing.prefix_blocks, cfg.routing.virtual_nodes);
  topo.actors.push_back(caf::actor_cast<caf::actor>(topo.router));
  return topo;
}

}  // namespace troupe
