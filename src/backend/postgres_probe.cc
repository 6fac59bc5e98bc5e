#include "backend/postgres_probe.h"

#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace tandem {

std::optional<PgConn> ConnectBriefly(const std::string& dsn) {
  PgConn conn(PQconnectdb((dsn + " connect_timeout=2").c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) return std::nullopt;
  return conn;
}

Result<PgResult> RunQuery(PGconn* conn, const char* sql) {
  PgResult result(PQexec(conn, sql));
  ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    return MakeError(ErrorCode::kUnavailable, fmt::format("query failed: {}", PQerrorMessage(conn)));
  }
  return result;
}

std::string HostOf(const std::string& dsn) {
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), nullptr);
  std::string host = "?", port = "5432";
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (std::string_view(o->keyword) == "host") host = o->val;
    if (std::string_view(o->keyword) == "port") port = o->val;
  }
  PQconninfoFree(options);
  return host + ":" + port;
}

Result<bool> IsInRecovery(PGconn* conn) {
  auto recovery = RunQuery(conn, "SELECT pg_is_in_recovery()");
  if (!recovery) return std::unexpected(recovery.error());
  return std::string_view(PQgetvalue(recovery->get(), 0, 0)) == "t";
}

Result<ReplicationState> QueryReplicationState(PGconn* primary) {
  auto rows = RunQuery(primary, "SELECT sync_state, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) FROM pg_stat_replication");
  if (!rows) return std::unexpected(rows.error());
  ReplicationState state;
  for (int row = 0; row < PQntuples(rows->get()); ++row) {
    std::string sync_state = PQgetvalue(rows->get(), row, 0);
    if (row == 0 || sync_state == "sync") state.sync_state = sync_state;
    state.replay_lag_seconds = std::atof(PQgetvalue(rows->get(), row, 1));
  }
  return state;
}

}  // namespace tandem
