#pragma once
// A consistent-hash ring: every member (a replica id) owns `virtual_nodes` points on a 64-bit ring,
// and a key belongs to the member of the first point at or after the key's hash, going clockwise.
// Adding or removing a member moves only the keys of that member's points (about 1/N of them).
//
// A member's points depend on its id alone (XXH3-64 of "id#0", "id#1", ...), so
// the ring is the same whatever order members join in, and a member that leaves and comes back
// owns the same keys as before. Points with equal hashes are ordered by member id.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe {

class hash_ring {
 public:
  /// Point hash of a key (XXH3-64 of its bytes).
  static uint64_t hash_key(std::string_view key);

  /// virtual_nodes < 1 is taken as 1.
  explicit hash_ring(int virtual_nodes);

  int virtual_nodes() const noexcept { return virtual_nodes_; }
  /// Adds a member (its points merge into the ring); no-op when it is a member already.
  void add(const std::string& id);
  /// Removes a member and its points; no-op when unknown.
  void remove(const std::string& id);
  bool contains(const std::string& id) const { return slot_of_.count(id) != 0; }
  size_t size() const noexcept { return slot_of_.size(); }

  /// A member's slot: a small index, stable while it is a member, for per-slot side tables.
  /// -1 when unknown. Slots of removed members are reused.
  int32_t slot(const std::string& id) const;
  /// Slots are below this bound.
  size_t slot_bound() const noexcept { return ids_.size(); }
  const std::string& id_of(int32_t slot) const { return ids_[static_cast<size_t>(slot)]; }

  /// Visits the members' slots clockwise from the key hash's position, one per ring point (so a
  /// member comes up once per point it owns), until `visit(slot)` returns true or a whole turn is
  /// done. Returns the slot visit accepted, or -1.
  template <class Visit>
  int32_t walk(uint64_t key_hash, Visit&& visit) const {
    if (points_.empty()) return -1;
    size_t i = first_at_or_after(key_hash);
    for (size_t n = 0; n < points_.size(); ++n, i = (i + 1 == points_.size() ? 0 : i + 1))
      if (visit(points_[i].slot)) return points_[i].slot;
    return -1;
  }
  /// The owner of the key hash (the first point's member), or -1 on an empty ring.
  int32_t owner(uint64_t key_hash) const {
    return walk(key_hash, [](int32_t) { return true; });
  }

 private:
  struct point {
    uint64_t hash;
    int32_t slot;
  };
  bool before(const point& a, const point& b) const;
  size_t first_at_or_after(uint64_t h) const;

  int virtual_nodes_;
  std::vector<point> points_;                        ///< sorted by (hash, member id)
  std::vector<std::string> ids_;                     ///< by slot; "" for a free slot
  std::vector<int32_t> free_slots_;
  std::unordered_map<std::string, int32_t> slot_of_;
};

}  // namespace troupe
