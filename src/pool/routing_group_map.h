// Which live server of a pool owns each routing group, by rendezvous (highest
// random weight) hashing: every server computes the same map from the same live
// set, and a server's death moves only the groups it owned. A user belongs to the
// group its address of record hashes to.
//
// Thread-safety: an immutable value once built.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

inline constexpr int kRoutingGroups = 256;

int RoutingGroupOf(std::string_view aor);

class RoutingGroupMap {
 public:
  RoutingGroupMap() = default;
  explicit RoutingGroupMap(std::vector<std::string> live_servers);

  // The owner of `group`, or "" when no server is live.
  const std::string& OwnerOf(int group) const;
  const std::string& OwnerOfUser(std::string_view aor) const { return OwnerOf(RoutingGroupOf(aor)); }
  // How many groups each live server owns.
  std::map<std::string, int> GroupCounts() const;
  const std::vector<std::string>& live_servers() const { return live_servers_; }

 private:
  std::vector<std::string> live_servers_;  // sorted
  std::vector<std::string> owners_;        // by group; empty when no server is live
};

}  // namespace tandem
