// What this server last saw each PostgreSQL pool's primary report about its standby
// (pg_stat_replication.sync_state), and when. Once the primary is dead, the standby
// alone cannot tell whether it was synchronous; this memory can, so a back-end
// failover is refused unless the last word was "sync". Kept in a file under the
// server's directory so it survives a restart of the server.
//
// Thread-safety: thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "topology/topology.h"

namespace tandem {

struct SyncObservation {
  std::string primary;     // host:port of the pool's dsn
  std::string standby;     // host:port of its mirror_dsn
  std::string sync_state;  // "sync", "async", "potential", "quorum" or "none"
  std::chrono::system_clock::time_point observed_at;

  // {"primary", "standby", "sync_state", "observed_at" (Unix seconds)}
  nlohmann::json ToJson() const;
  static std::optional<SyncObservation> FromJson(const nlohmann::json& json);
};

class StandbySyncMemory {
 public:
  // Loads what `path` holds; a missing or unreadable file is an empty memory.
  explicit StandbySyncMemory(std::string path);

  // Remembers `observation` for `pool`. The file is rewritten when the state or the
  // pair changed, or when its copy is 30 s old (a restarted server then knows when
  // it last looked, within 30 s), not on every observation.
  void Record(const std::string& pool, const SyncObservation& observation);

  // The last observation of `pool`, if it was of the pair the pool names now.
  std::optional<SyncObservation> Last(const PoolSpec& pool) const;

 private:
  void Persist();  // requires mu_

  const std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, SyncObservation> last_;       // guarded by mu_: by pool FQDN
  std::map<std::string, SyncObservation> persisted_;  // guarded by mu_: what the file holds
};

}  // namespace tandem
