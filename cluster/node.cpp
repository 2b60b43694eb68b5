#include "cluster/node.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/openssl/remote_actor.hpp>

#include "actors/gateway.hpp"
#include "actors/messages.hpp"
#include "actors/router_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"
#include "actors/topology.hpp"
#include "cluster/handshake.hpp"
#include "cluster/tls.hpp"
#include "runtime/comm/ucx_communicator.hpp"
#include "runtime/core/log.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/hub/pull.hpp"
#include "runtime/model/weights.hpp"

namespace troupe::cluster {

using namespace std::chrono_literals;

namespace {

/// How long one control-plane exchange with a peer may take (handshake, lookup).
constexpr auto peer_timeout = 5s;
/// Retries of an unreachable peer start at this and double up to the cap.
constexpr auto backoff_first = 100ms;
constexpr auto backoff_cap = 1000ms;
/// Shards of a tp/pp group wait this long for each other at start-up.
constexpr auto data_plane_connect_timeout = 120s;

/// The tokenizer and context length of a model, read from its file without loading the weights'
/// pages (a gateway or scheduler node needs no weights).
struct model_meta {
  std::shared_ptr<const tokenizer> tok;
  int64_t context_length = 0;
};

expected<model_meta> load_model_meta(const model_config& mc) {
  auto path = resolve_model_path(mc.path);
  TROUPE_TRY(path);
  auto weights = load_model_weights(*path);
  TROUPE_TRY(weights);
  auto tok = load_model_tokenizer(*weights, mc.tokenizer);
  TROUPE_TRY(tok);
  return model_meta{std::move(*tok), weights->hp.context_length};
}

/// The control plane's transport: CAF's OpenSSL module when the config has tls, else the plain
/// middleman (allowed on loopback only, see cluster_config).
caf::expected<caf::actor> connect_node(caf::actor_system& sys, const cluster_config& cfg, const node_config& n) {
  const auto port = static_cast<uint16_t>(n.port);
  return cfg.tls.enabled ? caf::openssl::remote_actor(sys, n.host, port) : sys.middleman().remote_actor(n.host, port);
}

/// Listens on the node's host only (never every interface).
caf::expected<uint16_t> publish_node(const caf::actor& a, const cluster_config& cfg, const node_config& me) {
  const auto port = static_cast<uint16_t>(me.port);
  return cfg.tls.enabled ? caf::openssl::publish(a, port, me.host.c_str(), true)
                         : a.home_system().middleman().publish(a, port, me.host.c_str(), true);
}

}  // namespace

status configure_node_system(caf::actor_system_config& sys_cfg, const cluster_config& cfg, const std::string& name) {
  configure_actor_system(sys_cfg);
  sys_cfg.load<caf::io::middleman>();
  if (!cfg.tls.enabled) return {};
  const tls_files files = cfg.tls_files_of(name);
  if (auto ok = check_tls_files(files); !ok)
    return make_error(ok.error().code(), "node '" + name + "': " + ok.error().message());
  if (const std::string w = key_mode_warning(files.key); !w.empty()) spdlog::warn("node {}: {}", name, w);
  configure_tls(sys_cfg, files, name, std::chrono::milliseconds(cfg.tls.handshake_timeout_ms));
  return {};
}

struct node_runtime::state {
  state(caf::actor_system& s, cluster_config c, std::string n)
      : sys(s), cfg(std::move(c)), name(std::move(n)), me(*cfg.find_node(name)), hello(make_hello(cfg, name)) {}

  caf::actor_system& sys;
  const cluster_config cfg;
  const std::string name;
  const node_config& me;
  const wire::Hello hello;

  std::atomic<bool> stopping{false};
  std::mutex mu;                              // guards everything below
  std::condition_variable wake;               // stop() wakes sleepers
  std::map<std::string, caf::actor> local;    // this node's shards and schedulers by key
  std::map<std::string, caf::actor> links;    // node name -> its node actor, after the handshake
  std::map<std::string, std::string> ucx_addresses;  // data-plane group key -> this node's shard's UCX address
  std::set<std::string> refusals;             // peers refused (logged once each)
  std::vector<caf::actor> schedulers, shards;  // to stop on shutdown, schedulers first
  /// The node's background threads, each with a flag it sets when it ends.
  struct worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<worker> threads;

  template <class F>
  void run(F body) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads.push_back(worker{std::thread([body = std::move(body), done] {
                               body();
                               *done = true;
                             }),
                             done});
  }

  caf::actor node_actor;
  router_actor router;
  std::unique_ptr<gateway> gw;
  std::map<std::string, size_t> replicas_up;  // gateway: model -> replicas routed to now
  std::optional<error> failed;                // the first part that can never start (guarded by mu)

  /// Logs why a part can never start and keeps the first such error for failure().
  void fail_for_good(const error& e) {
    spdlog::error("node {}: {}", name, e.what());
    std::lock_guard lock(mu);
    if (!failed) failed = e;
  }

  /// Sleeps d unless stopping; false when stopping.
  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return !wake.wait_for(lock, d, [this] { return stopping.load(); });
  }

  /// This node's actor `key`, or null when it is not running (yet).
  caf::actor find_local(const std::string& key) {
    std::lock_guard lock(mu);
    auto it = local.find(key);
    return it == local.end() ? caf::actor{} : it->second;
  }

  void put_local(const std::string& key, caf::actor a, bool is_shard) {
    std::lock_guard lock(mu);
    local[key] = a;
    (is_shard ? shards : schedulers).push_back(std::move(a));
  }
  void drop_local(const std::string& key) {
    std::lock_guard lock(mu);
    local.erase(key);
  }
  void drop_link(const std::string& node) {
    std::lock_guard lock(mu);
    links.erase(node);
  }

  /// The node actor of `node`, connected and handshaken.
  expected<caf::actor> link(const std::string& node) {
    {
      std::lock_guard lock(mu);
      if (auto it = links.find(node); it != links.end()) return it->second;
    }
    const node_config* peer = cfg.find_node(node);
    auto remote = connect_node(sys, cfg, *peer);
    if (!remote)
      return make_error(errc::unavailable, "node '" + node + "' at " + peer->host + ":" + std::to_string(peer->port) +
                                               " is not reachable: " + sys.render(remote.error()) +
                                               (cfg.tls.enabled ? " (over TLS: a refused certificate is logged by both nodes)" : ""));
    std::string reply, failure;
    {
      caf::scoped_actor self{sys};
      self->request(*remote, peer_timeout, hello_v, hello.SerializeAsString())
          .receive([&](std::string& r) { reply = std::move(r); }, [&](caf::error& e) { failure = sys.render(e); });
    }
    if (!failure.empty())
      return make_error(errc::unavailable, "node '" + node + "' did not answer the handshake: " + failure);
    if (const std::string why = check_reply(hello, reply); !why.empty()) {
      std::lock_guard lock(mu);
      if (refusals.insert(node).second) spdlog::error("node {}: refusing {}", name, why);
      return make_error(errc::invalid_argument, why);
    }
    std::lock_guard lock(mu);
    if (refusals.erase(node)) spdlog::info("node {}: node '{}' is compatible now", name, node);
    links[node] = *remote;
    return *remote;
  }

  /// The actor `key` of `node` (this one or a peer); not ready yet, or unreachable, is an error.
  expected<caf::actor> lookup(const std::string& node, const std::string& key) {
    if (node == name) {
      if (caf::actor a = find_local(key)) return a;
      return make_error(errc::not_found, key + " is not running on this node (yet)");
    }
    return ask<caf::actor>(node, lookup_v, key);
  }

  /// Asks peer `node`'s actor for `key` (its answer is a T); a broken connection is dropped, so the
  /// next call connects again.
  template <class T, class Atom>
  expected<T> ask(const std::string& node, Atom atom, const std::string& key) {
    auto peer = link(node);
    TROUPE_TRY(peer);
    std::optional<T> found;
    std::string failure;
    bool peer_gone = false;
    {
      caf::scoped_actor self{sys};
      self->request(*peer, peer_timeout, atom, key)
          .receive([&](T& a) { found = std::move(a); },
                   [&](caf::error& e) {
                     failure = sys.render(e);
                     peer_gone = e != caf::sec::runtime_error;  // runtime_error: up, but not ready yet
                   });
    }
    if (found) return std::move(*found);
    if (peer_gone) drop_link(node);  // the connection broke: connect again next time
    return make_error(errc::unavailable, key + " on node '" + node + "': " + failure);
  }

  /// The UCX address this node's shard published under `key` ("tales/0/shard1/tp"), or, on a peer,
  /// the one its shard did (asked over the handshaken control plane).
  expected<std::string> ucx_address(const std::string& node, const std::string& key) {
    if (node == name) {
      std::lock_guard lock(mu);
      if (auto it = ucx_addresses.find(key); it != ucx_addresses.end()) return it->second;
      return make_error(errc::not_found, key + " has published no address yet");
    }
    return ask<std::string>(node, ucx_address_v, key);
  }

  /// lookup, retried with backoff until it succeeds or the node stops. Logs once while waiting.
  expected<caf::actor> lookup_retrying(const std::string& node, const std::string& key) {
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(backoff_first);
    bool logged = false;
    for (;;) {
      auto a = lookup(node, key);
      if (a) {
        if (logged) spdlog::info("node {}: found {} on node '{}'", name, key, node);
        return a;
      }
      if (!logged) {
        spdlog::info("node {}: waiting for {} on node '{}': {}", name, key, node, a.error().what());
        logged = true;
      }
      if (!sleep_for(delay)) return make_error(errc::unavailable, "node is stopping");
      delay = std::min<std::chrono::milliseconds>(delay * 2, backoff_cap);
    }
  }
};

namespace {

using state_ptr = std::shared_ptr<node_runtime::state>;

/// The node actor: the handshake, and lookups of this node's shards and schedulers.
caf::behavior node_actor_behavior(caf::event_based_actor* self, state_ptr s) {
  return {
      [s](hello_atom, const std::string& peer) -> std::string { return answer_hello(s->hello, peer); },
      [s](lookup_atom, const std::string& key) -> caf::result<caf::actor> {
        if (caf::actor a = s->find_local(key)) return a;
        return caf::make_error(caf::sec::runtime_error, key + " is not running on node '" + s->name + "' (yet)");
      },
      [s](ucx_address_atom, const std::string& key) -> caf::result<std::string> {
        auto a = s->ucx_address(s->name, key);
        if (a) return *a;
        return caf::make_error(caf::sec::runtime_error, a.error().message());
      },
  };
}

/// The UCX address book of one tp/pp group: each member shard publishes its address on its own node
/// and is asked for it through that node's actor, so addresses travel only over the nodes' control
/// plane (where peers are handshaken), never through a port that anyone may write to.
class node_address_book final : public ucx_address_book {
 public:
  node_address_book(state_ptr s, std::vector<shard_slot> members, std::string group)
      : s_(std::move(s)), members_(std::move(members)), group_(std::move(group)) {}

  status publish(int rank, const std::string& address) override {
    std::lock_guard lock(s_->mu);
    s_->ucx_addresses[key(rank)] = address;
    return {};
  }
  expected<std::string> fetch(int rank) override {
    return s_->ucx_address(members_[static_cast<size_t>(rank)].node(), key(rank));
  }
  /// "shard tales/0/shard1 on node 'worker'", for messages.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const shard_slot& m : members_) out.push_back("shard " + m.key() + " on node '" + m.node() + "'");
    return out;
  }

 private:
  std::string key(int rank) const { return members_[static_cast<size_t>(rank)].key() + "/" + group_; }
  state_ptr s_;
  std::vector<shard_slot> members_;
  std::string group_;
};

/// Runs one shard of a replica: its communicators first (they wait for the group's other shards), then
/// the model slice. A shard of a tp/pp group also watches the group's other shards: when one goes down
/// (its node died), the group's data plane is broken, so this shard stops too and the group is built
/// again once the peers are back (a restarted node's shards join the survivors' new group).
void run_shard(const state_ptr& s, shard_slot slot) {
  const cluster_model& m = *slot.model;
  const bool grouped = m.tp * m.pp > 1;
  while (!s->stopping) {
    engine_options eo = replica_engine_options(m.model);
    if (eo.model.threads == 0) eo.model.threads = s->me.threads;
    parallel_layout& layout = eo.model.parallel.layout;
    layout = parallel_layout{m.tp, slot.rank(), m.pp, slot.stage()};
    auto connect = [&](bool tp_group) -> expected<std::shared_ptr<communicator>> {
      std::vector<shard_slot> members;
      if (tp_group)
        for (int r = 0; r < m.tp; ++r) members.push_back({&m, slot.replica, slot.stage() * m.tp + r});
      else
        for (int st = 0; st < m.pp; ++st) members.push_back({&m, slot.replica, st * m.tp + slot.rank()});
      auto book = std::make_shared<node_address_book>(s, members, tp_group ? "tp" : "pp");
      ucx_options uo;
      uo.rank = tp_group ? slot.rank() : slot.stage();
      uo.world_size = static_cast<int>(members.size());
      uo.names = book->names();
      uo.addresses = book;
      uo.host = s->me.host;  // UCX listens on this node's interface only
      uo.connect_timeout = data_plane_connect_timeout;
      spdlog::info("node {}: shard {} joins its {} group ({} ranks) on {}", s->name, slot.key(), tp_group ? "tp" : "pp",
                   members.size(), s->me.host);
      auto c = make_ucx_communicator(uo);
      TROUPE_TRY(c);
      return std::shared_ptr<communicator>(std::move(*c));
    };
    auto fail = [&](const error& e) { spdlog::error("node {}: shard {} cannot start: {}", s->name, slot.key(), e.what()); };
    if (m.tp > 1) {
      auto c = connect(true);
      if (!c) return fail(c.error());
      eo.model.parallel.tp = *c;
    }
    if (m.pp > 1) {
      auto c = connect(false);
      if (!c) return fail(c.error());
      eo.model.parallel.pp = *c;
    }
    if (s->stopping) return;
    auto shard = spawn_shard(s->sys, eo);
    // Loading fails the same way every time: the node reports it (failure()) instead of waiting.
    if (!shard)
      return s->fail_for_good(error(shard.error().code(), "shard " + slot.key() + " cannot load: " + shard.error().message()));
    const caf::actor own = caf::actor_cast<caf::actor>(*shard);
    s->put_local(slot.key(), own, true);
    spdlog::info("node {}: shard {} ready ({})", s->name, slot.key(), layout.to_string());
    if (!grouped) return;  // a lone shard lives as long as its node

    caf::scoped_actor self{s->sys};
    self->monitor(own);
    for (int k = 0; k < m.tp * m.pp; ++k) {
      if (k == slot.index) continue;
      const shard_slot peer{&m, slot.replica, k};
      auto a = s->lookup_retrying(peer.node(), peer.key());
      if (!a) return;  // stopping
      self->monitor(*a);
    }
    bool down = false;
    while (!down && !s->stopping)
      self->receive([&](caf::down_msg&) { down = true; }, caf::after(std::chrono::milliseconds(200)) >> [] {});
    if (s->stopping) return;
    spdlog::warn("node {}: a shard of replica {} went down; shard {} rebuilds its data-plane group", s->name,
                 replica_key(m.model.name, slot.replica), slot.key());
    s->drop_local(slot.key());
    caf::anon_send_exit(own, caf::exit_reason::user_shutdown);
  }
}

/// Runs one replica's scheduler: finds its shards, spawns it, and starts it again whenever it goes
/// down (a shard's node died) once the shards are back.
void run_scheduler(const state_ptr& s, const cluster_model* m, int replica) {
  const std::string key = replica_key(m->model.name, replica);
  auto meta = load_model_meta(m->model);
  if (!meta)
    return s->fail_for_good(error(meta.error().code(), "scheduler " + key + " cannot start: " + meta.error().message()));
  const replica_placement& p = m->replicas[static_cast<size_t>(replica)];
  while (!s->stopping) {
    std::vector<shard_actor> shards;
    for (int k = 0; k < static_cast<int>(p.shards.size()); ++k) {
      const shard_slot slot{m, replica, k};
      auto a = s->lookup_retrying(slot.node(), slot.key());
      if (!a) return;  // stopping
      shards.push_back(caf::actor_cast<shard_actor>(*a));
    }
    auto sched = spawn_scheduler(s->sys, shards, meta->tok, replica_scheduler_options(m->model));
    if (!sched) {
      spdlog::error("node {}: scheduler {}: {}", s->name, key, sched.error().what());
      if (!s->sleep_for(backoff_cap)) return;
      continue;
    }
    const caf::actor a = caf::actor_cast<caf::actor>(*sched);
    s->put_local(key, a, false);
    spdlog::info("node {}: scheduler {} ready ({} shard{})", s->name, key, shards.size(), shards.size() == 1 ? "" : "s");
    // Wait for it to go down (or the node to stop).
    caf::scoped_actor self{s->sys};
    self->monitor(a);
    bool down = false;
    while (!down && !s->stopping) {
      self->receive([&](caf::down_msg& dm) { down = dm.source == a.address(); },
                    caf::after(std::chrono::milliseconds(200)) >> [] {});
    }
    s->drop_local(key);
    if (down) spdlog::warn("node {}: scheduler {} went down; starting it again once its shards answer", s->name, key);
  }
}

/// Gateway side of one replica: finds its scheduler, puts it in the router, and checks on it every
/// heartbeat interval. No answer within the timeout takes it out of routing; a scheduler that went
/// away (its node died) is looked up again until its node is back.
void watch_replica(const state_ptr& s, const cluster_model* m, int replica) {
  const std::string key = replica_key(m->model.name, replica);
  const std::string node = m->replicas[static_cast<size_t>(replica)].scheduler;
  const auto interval = std::chrono::milliseconds(s->cfg.heartbeat.interval_ms);
  const auto timeout = std::chrono::milliseconds(s->cfg.heartbeat.timeout_ms);
  auto set_up = [&](bool up) {
    std::lock_guard lock(s->mu);
    size_t& n = s->replicas_up[m->model.name];
    n = up ? n + 1 : (n > 0 ? n - 1 : 0);
    // Ready once every model has had a replica; later a model without one answers each request with
    // its own error (no healthy replica) while the other models keep serving.
    bool all = true;
    for (const auto& cm : s->cfg.models) all = all && s->replicas_up[cm.model.name] > 0;
    if (all && s->gw) s->gw->set_ready(true);
  };
  while (!s->stopping) {
    auto found = s->lookup_retrying(node, key);
    if (!found) return;
    const auto sched = caf::actor_cast<scheduler_actor>(*found);
    caf::anon_send(s->router, replica_up_v, m->model.name, key, sched);
    set_up(true);
    bool routed = true;
    caf::scoped_actor self{s->sys};
    // A request to the proxy of an actor whose node died is never answered; the monitor says it died.
    self->monitor(sched);
    while (!s->stopping) {
      bool answered = false;
      std::string failure;
      bool gone = false;
      self->request(sched, timeout, stats_atom_v).receive([&](scheduler_stats&) { answered = true; },
                                                    [&](caf::error& e) {
                                                      failure = s->sys.render(e);
                                                      gone = e != caf::sec::request_timeout;
                                                    });
      self->receive([&](caf::down_msg& dm) {
                      if (dm.source != sched.address()) return;
                      gone = true;
                      failure = s->sys.render(dm.reason);
                    },
                    caf::after(std::chrono::milliseconds(0)) >> [] {});
      if (answered && !routed) {
        caf::anon_send(s->router, replica_up_v, m->model.name, key, sched);
        set_up(true);
        routed = true;
      } else if (!answered && routed) {
        const std::string why = gone ? "its scheduler is gone (" + failure + ")"
                                     : "no heartbeat answer in " + std::to_string(timeout.count()) + " ms";
        caf::anon_send(s->router, replica_down_v, key, why);
        set_up(false);
        routed = false;
      }
      if (gone) {
        s->drop_link(node);
        break;  // look it up again: its node restarts with a new scheduler
      }
      if (!s->sleep_for(interval)) break;
    }
    if (routed) set_up(false);
  }
}

}  // namespace

node_runtime::node_runtime(std::shared_ptr<state> s) : s_(std::move(s)) {}

node_runtime::~node_runtime() { stop(std::chrono::milliseconds(0)); }

uint16_t node_runtime::http_port() const noexcept { return s_->gw ? s_->gw->port() : 0; }

std::optional<error> node_runtime::failure() const {
  std::lock_guard lock(s_->mu);
  return s_->failed;
}

expected<std::unique_ptr<node_runtime>> node_runtime::start(caf::actor_system& sys, cluster_config cfg,
                                                            const std::string& name) {
  if (!cfg.find_node(name))
    return make_error(errc::invalid_argument, "no node named '" + name + "' in the config (nodes: " + cfg.node_names() + ")");
  auto s = std::make_shared<state>(sys, std::move(cfg), name);
  std::unique_ptr<node_runtime> rt(new node_runtime(s));

  // A gateway node loads every model's tokenizer first: a bad model path fails the start, loudly.
  std::vector<served_model> served;
  if (s->me.http_port > 0) {
    for (const auto& m : s->cfg.models) {
      auto meta = load_model_meta(m.model);
      if (!meta) return make_error(meta.error().code(), "model '" + m.model.name + "': " + meta.error().message());
      served.push_back(served_model{m.model.name, meta->tok, meta->context_length});
    }
  }

  s->node_actor = sys.spawn(node_actor_behavior, s);
  if (!s->cfg.tls.enabled)
    spdlog::warn("node {}: the control port {}:{} is not authenticated (the config has no `tls`, allowed as every node "
                 "is on loopback): any local user can connect to it", name, s->me.host, s->me.port);
  auto port = publish_node(s->node_actor, s->cfg, s->me);
  if (!port) {
    caf::anon_send_exit(s->node_actor, caf::exit_reason::user_shutdown);
    return make_error(errc::unavailable, "node '" + name + "': cannot listen on " + s->me.host + ":" +
                                             std::to_string(s->me.port) + ": " + sys.render(port.error()));
  }

  for (const shard_slot& slot : shards_on(s->cfg, name)) s->run([s, slot] { run_shard(s, slot); });
  for (const auto& m : s->cfg.models)
    for (int r = 0; r < static_cast<int>(m.replicas.size()); ++r)
      if (m.replicas[static_cast<size_t>(r)].scheduler == name)
        s->run([s, mp = &m, r] { run_scheduler(s, mp, r); });

  if (s->me.http_port > 0) {
    auto router = spawn_router(sys, std::vector<replica_entry>{}, s->cfg.routing);
    if (!router) {
      rt->stop(std::chrono::milliseconds(0));
      return unexpected{router.error()};
    }
    s->router = *router;
    gateway_options go;
    go.http.host = s->me.http_host;
    go.http.port = static_cast<uint16_t>(s->me.http_port);
    auto gw = gateway::start(sys, s->router, std::move(served), go);
    if (!gw) {
      rt->stop(std::chrono::milliseconds(0));
      return make_error(gw.error().code(), "node '" + name + "': gateway: " + gw.error().message());
    }
    {
      std::lock_guard lock(s->mu);
      s->gw = std::move(*gw);
    }
    for (const auto& m : s->cfg.models)
      for (int r = 0; r < static_cast<int>(m.replicas.size()); ++r)
        s->run([s, mp = &m, r] { watch_replica(s, mp, r); });
  }
  return rt;
}

bool node_runtime::stop(std::chrono::milliseconds drain) {
  if (!s_ || s_->stopping.exchange(true)) return true;
  s_->wake.notify_all();
  if (s_->gw) s_->gw->stop(drain);
  // Every thread sees `stopping` within 200 ms, except a shard waiting for its data-plane peers
  // (UCX connects for up to two minutes): it is left behind, and returns without touching the actor
  // system once its wait ends.
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  bool all_ended = true;
  for (auto& w : s_->threads) {
    while (!*w.done && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    if (*w.done) {
      w.thread.join();
    } else {
      w.thread.detach();
      all_ended = false;
    }
  }
  std::vector<caf::actor> schedulers, shards;
  {
    std::lock_guard lock(s_->mu);
    schedulers.swap(s_->schedulers);
    shards.swap(s_->shards);
    s_->local.clear();
    s_->links.clear();
  }
  // Front to back, so nobody reports a peer's exit as a failure: router, schedulers, shards.
  if (s_->router) caf::anon_send_exit(s_->router, caf::exit_reason::user_shutdown);
  for (const auto& a : schedulers) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (const auto& a : shards) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  s_->sys.middleman().unpublish(s_->node_actor, static_cast<uint16_t>(s_->me.port));
  caf::anon_send_exit(s_->node_actor, caf::exit_reason::user_shutdown);
  s_->gw.reset();
  return all_ended;
}

}  // namespace troupe::cluster
