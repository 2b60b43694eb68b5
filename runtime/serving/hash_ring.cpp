#include "runtime/serving/hash_ring.hpp"

#include <xxhash.h>

#include <algorithm>

namespace troupe {

uint64_t hash_ring::hash_key(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

hash_ring::hash_ring(int virtual_nodes) : virtual_nodes_(std::max(1, virtual_nodes)) {}

bool hash_ring::before(const point& a, const point& b) const {
  if (a.hash != b.hash) return a.hash < b.hash;
  return ids_[static_cast<size_t>(a.slot)] < ids_[static_cast<size_t>(b.slot)];
}

size_t hash_ring::first_at_or_after(uint64_t h) const {
  auto it = std::lower_bound(points_.begin(), points_.end(), h, [](const point& p, uint64_t v) { return p.hash < v; });
  return it == points_.end() ? 0 : static_cast<size_t>(it - points_.begin());
}

int32_t hash_ring::slot(const std::string& id) const {
  auto it = slot_of_.find(id);
  return it == slot_of_.end() ? -1 : it->second;
}

void hash_ring::add(const std::string& id) {
  if (slot_of_.count(id)) return;
  int32_t s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
    ids_[static_cast<size_t>(s)] = id;
  } else {
    s = static_cast<int32_t>(ids_.size());
    ids_.push_back(id);
  }
  slot_of_.emplace(id, s);
  // Merging V sorted points costs O(ring) per member: joins are rare, and a rebuild would sort the
  // whole ring each time.
  std::vector<point> mine;
  mine.reserve(static_cast<size_t>(virtual_nodes_));
  // Point v hashes the text "id#v" (the last '#' makes it distinct for every id and v). Seeding the
  // id's hash with v instead collides: for 1-3 byte ids XXH3 folds input and seed together
  // linearly before mixing, so "m/0" seeded with 1 equals "m/1" seeded with 0, and such replicas
  // shared their points (one of them owned nearly every key).
  std::string text = id + '#';
  for (int v = 0; v < virtual_nodes_; ++v) {
    text.resize(id.size() + 1);
    text += std::to_string(v);
    mine.push_back(point{XXH3_64bits(text.data(), text.size()), s});
  }
  auto less = [this](const point& a, const point& b) { return before(a, b); };
  std::sort(mine.begin(), mine.end(), less);
  const auto middle = static_cast<std::ptrdiff_t>(points_.size());
  points_.insert(points_.end(), mine.begin(), mine.end());
  std::inplace_merge(points_.begin(), points_.begin() + middle, points_.end(), less);
}

void hash_ring::remove(const std::string& id) {
  auto it = slot_of_.find(id);
  if (it == slot_of_.end()) return;
  const int32_t s = it->second;
  std::erase_if(points_, [s](const point& p) { return p.slot == s; });
  ids_[static_cast<size_t>(s)].clear();
  free_slots_.push_back(s);
  slot_of_.erase(it);
}

}  // namespace troupe
