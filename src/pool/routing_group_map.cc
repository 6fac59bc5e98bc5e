#include "pool/routing_group_map.h"

#include <algorithm>

namespace tandem {

namespace {

// 64-bit FNV-1a, then a finalizer so nearby inputs spread (splitmix64's mix).
uint64_t Hash(std::string_view text, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

const std::string kNobody;

}  // namespace

int RoutingGroupOf(std::string_view aor) { return static_cast<int>(Hash(aor, 0) % kRoutingGroups); }

RoutingGroupMap::RoutingGroupMap(std::vector<std::string> live_servers) : live_servers_(std::move(live_servers)) {
  std::sort(live_servers_.begin(), live_servers_.end());
  live_servers_.erase(std::unique(live_servers_.begin(), live_servers_.end()), live_servers_.end());
  if (live_servers_.empty()) return;
  owners_.resize(kRoutingGroups);
  for (int group = 0; group < kRoutingGroups; ++group) {
    uint64_t best = 0;
    for (const std::string& server : live_servers_) {
      uint64_t weight = Hash(server, static_cast<uint64_t>(group) + 1);
      if (owners_[group].empty() || weight > best) {
        best = weight;
        owners_[group] = server;
      }
    }
  }
}

const std::string& RoutingGroupMap::OwnerOf(int group) const {
  if (owners_.empty() || group < 0 || group >= kRoutingGroups) return kNobody;
  return owners_[group];
}

std::map<std::string, int> RoutingGroupMap::GroupCounts() const {
  std::map<std::string, int> counts;
  for (const std::string& server : live_servers_) counts[server] = 0;
  for (const std::string& owner : owners_) ++counts[owner];
  return counts;
}

}  // namespace tandem
