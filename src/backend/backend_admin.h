// Back-end high availability for PostgreSQL pools (`tandem backend status|failover`):
// reports which server is primary, whether the standby is synchronous and how far it
// lags, and promotes the synchronous standby when the primary is lost. Servers follow
// the promotion by themselves: their store connects with a multi-host DSN
// (MultiHostDsn) and target_session_attrs=read-write.
//
// Thread-safety: free functions; each call opens its own connections.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/standby_sync_memory.h"
#include "common/error.h"
#include "topology/topology.h"

namespace tandem {

// One DSN naming both the primary and the mirror, in that order, so libpq picks
// whichever accepts writes. Returns `dsn` unchanged when there is no mirror.
Result<std::string> MultiHostDsn(const std::string& dsn, const std::string& mirror_dsn);

// {"pool", "backend", "servers": [{"role": "primary"|"standby"|"unreachable", "dsn_host", ...}],
//  "synchronous": bool, "replay_lag_seconds": x}
Result<nlohmann::json> BackendStatus(const PoolSpec& pool);

// Promotes the mirror. Refused (kFailedPrecondition, changing nothing) when the pool
// has no PostgreSQL mirror, when the primary is still reachable (two primaries would
// accept writes: stop it first), when `last_observed` (what the caller last saw the
// primary report, see StandbySyncMemory) is missing or not "sync" (the standby may
// lack acknowledged writes), or when the mirror is not a standby. `now` dates the
// observation in messages.
Result<nlohmann::json> BackendFailover(const PoolSpec& pool, const std::optional<SyncObservation>& last_observed,
                                       std::chrono::system_clock::time_point now);

}  // namespace tandem
