#include "runtime/serving/router_policy.hpp"

#include <algorithm>

namespace troupe {

const replica_info& least_loaded_strategy::choose(std::span<const replica_info* const> candidates,
                                                  std::string_view /*prefix_key*/) {
  const replica_info* best = candidates.front();
  for (const replica_info* r : candidates)
    if (r->in_flight < best->in_flight || (r->in_flight == best->in_flight && r->id < best->id)) best = r;
  return *best;
}

router_policy::router_policy(std::unique_ptr<replica_strategy> strategy) : strategy_(std::move(strategy)) {
  if (!strategy_) strategy_ = std::make_unique<least_loaded_strategy>();
}

status router_policy::add_replica(const std::string& model, const std::string& replica_id) {
  if (replicas_.count(replica_id))
    return make_error(errc::invalid_argument, "router: replica '" + replica_id + "' is already registered");
  auto it = replicas_.emplace(replica_id, replica_info{replica_id, model, true, 0}).first;
  by_model_[model].push_back(&it->second);
  strategy_->on_replica_added(it->second);
  return {};
}

status router_policy::remove_replica(const std::string& replica_id) {
  auto it = replicas_.find(replica_id);
  if (it == replicas_.end()) return make_error(errc::not_found, "router: no replica '" + replica_id + "'");
  auto& mine = by_model_[it->second.model];
  std::erase(mine, &it->second);
  if (mine.empty()) by_model_.erase(it->second.model);
  strategy_->on_replica_removed(it->second);
  replicas_.erase(it);
  return {};
}

expected<std::string> router_policy::pick(const std::string& model, std::string_view prefix_key) {
  return pick_excluding(model, prefix_key, {});
}

expected<std::string> router_policy::pick_excluding(const std::string& model, std::string_view prefix_key,
                                                    std::span<const std::string> tried) {
  auto m = by_model_.find(model);
  if (m == by_model_.end()) return make_error(errc::not_found, "model '" + model + "' is not served here");
  std::vector<const replica_info*> candidates;
  size_t unhealthy = 0;
  candidates.reserve(m->second.size());
  for (const replica_info* r : m->second) {
    if (!r->healthy) {
      ++unhealthy;
      continue;
    }
    if (std::find(tried.begin(), tried.end(), r->id) != tried.end()) continue;
    candidates.push_back(r);
  }
  if (candidates.empty())
    return make_error(errc::unavailable, "model '" + model + "' has no available replica (" +
                                           std::to_string(m->second.size()) + " replicas, " +
                                           std::to_string(unhealthy) + " unhealthy, " +
                                           std::to_string(tried.size()) + " already tried)");
  return strategy_->choose(candidates, prefix_key).id;
}

void router_policy::on_failure(const std::string& replica_id) {
  if (auto it = replicas_.find(replica_id); it != replicas_.end()) it->second.healthy = false;
}

void router_policy::on_recovered(const std::string& replica_id) {
  if (auto it = replicas_.find(replica_id); it != replicas_.end()) it->second.healthy = true;
}

void router_policy::on_start(const std::string& replica_id) {
  if (auto it = replicas_.find(replica_id); it != replicas_.end()) ++it->second.in_flight;
}

void router_policy::on_finish(const std::string& replica_id) {
  if (auto it = replicas_.find(replica_id); it != replicas_.end() && it->second.in_flight > 0) --it->second.in_flight;
}

std::vector<std::string> router_policy::models() const {
  std::vector<std::string> out;
  for (const auto& [name, ids] : by_model_) out.push_back(name);
  return out;
}

const replica_info* router_policy::find(const std::string& replica_id) const {
  auto it = replicas_.find(replica_id);
  return it == replicas_.end() ? nullptr : &it->second;
}

}  // namespace troupe
