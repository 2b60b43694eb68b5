#pragma once
// The router's policy: for every model name, its replicas with their health and in-flight load,
// and the choice of a replica for a request. Plain host code; the router actor owns one.
//
// The choice itself is a strategy object chosen once when the router is built: least-loaded here,
// round-robin and (bounded-load) consistent hashing over the prefix key in routing_strategies.hpp.

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.hpp"

namespace troupe {

/// One replica of a model, as the router sees it.
struct replica_info {
  std::string id;          ///< unique across the router (an actor name or node/replica address)
  std::string model;       ///< the model name it serves
  bool healthy = true;
  int64_t in_flight = 0;   ///< requests sent to it and not finished
};

/// Picks one replica among healthy candidates (never empty) for a request with this prefix key.
class replica_strategy {
 public:
  virtual ~replica_strategy() = default;
  virtual const replica_info& choose(std::span<const replica_info* const> candidates,
                                     std::string_view prefix_key) = 0;
  /// A replica joined / left the router (a hash ring places or drops its points). Health changes
  /// are not membership changes: an unhealthy replica is just not among the candidates.
  virtual void on_replica_added(const replica_info& /*replica*/) {}
  virtual void on_replica_removed(const replica_info& /*replica*/) {}
};

/// The least loaded replica; ties go to the smallest id.
class least_loaded_strategy final : public replica_strategy {
 public:
  const replica_info& choose(std::span<const replica_info* const> candidates, std::string_view prefix_key) override;
};

class router_policy {
 public:
  /// strategy null: least_loaded_strategy.
  explicit router_policy(std::unique_ptr<replica_strategy> strategy = nullptr);

  /// Adds a healthy replica of model; invalid_argument when the id is taken.
  status add_replica(const std::string& model, const std::string& replica_id);
  /// Removes a replica; not_found when unknown.
  status remove_replica(const std::string& replica_id);

  /// A healthy replica for model, chosen by the strategy. not_found names the model
  /// when it is unknown or none of its replicas is healthy.
  expected<std::string> pick(const std::string& model, std::string_view prefix_key);
  /// As pick, skipping replicas already tried for this request (a retry after a failure).
  expected<std::string> pick_excluding(const std::string& model, std::string_view prefix_key,
                                       std::span<const std::string> tried);

  /// The replica failed (dead node, errors): no more requests go to it until on_recovered.
  void on_failure(const std::string& replica_id);
  /// The replica is healthy again.
  void on_recovered(const std::string& replica_id);
  /// A request was sent to the replica / finished there (in-flight load).
  void on_start(const std::string& replica_id);
  void on_finish(const std::string& replica_id);

  /// Model names served, sorted.
  std::vector<std::string> models() const;
  /// The replica's state, or nullptr.
  const replica_info* find(const std::string& replica_id) const;

 private:
  std::unique_ptr<replica_strategy> strategy_;
  std::map<std::string, replica_info> replicas_;                 ///< by id
  std::map<std::string, std::vector<const replica_info*>> by_model_;  ///< model -> its replicas (in replicas_)
};

}  // namespace troupe
