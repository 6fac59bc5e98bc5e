// libpq helpers for the back-end HA code (status, failover, the standby watch):
// short-timeout connections that report an unreachable server as nullopt, one-shot
// queries, and what a primary says about its standbys.
//
// Thread-safety: free functions; a PgConn is used by one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>

#include "common/error.h"

namespace tandem {

struct PgConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using PgConn = std::unique_ptr<PGconn, PgConnCloser>;

struct PgResultCloser {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, PgResultCloser>;

// Connects with a 2 s timeout; an unreachable server is nullopt, not an error.
std::optional<PgConn> ConnectBriefly(const std::string& dsn);

Result<PgResult> RunQuery(PGconn* conn, const char* sql);

// "host:port" of a DSN, for messages.
std::string HostOf(const std::string& dsn);

// Whether the server is a standby (in recovery); an error if it cannot say.
Result<bool> IsInRecovery(PGconn* conn);

// What a primary reports in pg_stat_replication about its standbys.
struct ReplicationState {
  // "sync" when a standby is synchronous, else the first standby's state ("async",
  // "potential", "quorum"), or "none" when no standby is connected.
  std::string sync_state = "none";
  std::optional<double> replay_lag_seconds;  // of the last standby listed
};
Result<ReplicationState> QueryReplicationState(PGconn* primary);

}  // namespace tandem
