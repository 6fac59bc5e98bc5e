#include "backend/backend_admin.h"

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <map>
#include <optional>

#include <fmt/format.h>

namespace tandem {

using nlohmann::json;

namespace {

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;

struct ResultCloser {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, ResultCloser>;

// Connects with a short timeout; an unreachable server is nullopt, not an error.
std::optional<Conn> Connect(const std::string& dsn) {
  Conn conn(PQconnectdb((dsn + " connect_timeout=2").c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) return std::nullopt;
  return conn;
}

Result<PgResult> Query(PGconn* conn, const char* sql) {
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

Status RequirePostgresMirror(const PoolSpec& pool) {
  if (pool.backend.type != BackendType::kPostgres) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} uses a SQLite back-end, which has no standby to fail over to", pool.fqdn));
  }
  if (pool.backend.postgres_mirror_dsn.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} has no standby: add mirror_dsn to its back-end in the topology", pool.fqdn));
  }
  return OkStatus();
}

}  // namespace

Result<std::string> MultiHostDsn(const std::string& dsn, const std::string& mirror_dsn) {
  if (mirror_dsn.empty()) return dsn;
  std::map<std::string, std::string> merged;
  for (const std::string* text : {&dsn, &mirror_dsn}) {
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(text->c_str(), &error);
    if (options == nullptr) {
      std::string reason = error ? error : "unparsable";
      PQfreemem(error);
      return MakeError(ErrorCode::kInvalidArgument, fmt::format("bad PostgreSQL DSN: {}", reason));
    }
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (o->val == nullptr) continue;
      std::string key = o->keyword;
      if ((key == "host" || key == "port" || key == "hostaddr") && merged.contains(key)) {
        merged[key] += std::string(",") + o->val;  // host=a,b port=x,y
      } else if (!merged.contains(key)) {
        merged[key] = o->val;
      }
    }
    PQconninfoFree(options);
  }
  if (!merged.contains("port")) merged["port"] = "5432,5432";
  merged["target_session_attrs"] = "read-write";
  std::string out;
  for (const auto& [key, value] : merged) out += fmt::format("{}{}='{}'", out.empty() ? "" : " ", key, value);
  return out;
}

Result<json> BackendStatus(const PoolSpec& pool) {
  if (pool.backend.type != BackendType::kPostgres) {
    return json{{"pool", pool.fqdn}, {"backend", "sqlite"}, {"path", pool.backend.sqlite_path}};
  }
  json servers = json::array();
  std::optional<bool> synchronous;
  std::optional<double> lag;
  for (const std::string* dsn : {&pool.backend.postgres_dsn, &pool.backend.postgres_mirror_dsn}) {
    if (dsn->empty()) continue;
    json entry{{"server", HostOf(*dsn)}, {"role", "unreachable"}};
    if (auto conn = Connect(*dsn)) {
      auto recovery = Query(conn->get(), "SELECT pg_is_in_recovery()");
      bool standby = recovery && std::string_view(PQgetvalue(recovery->get(), 0, 0)) == "t";
      entry["role"] = standby ? "standby" : "primary";
      if (!standby) {
        auto replication = Query(conn->get(),
                                 "SELECT sync_state, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) FROM pg_stat_replication");
        if (replication) {
          synchronous = false;
          for (int row = 0; row < PQntuples(replication->get()); ++row) {
            if (std::string_view(PQgetvalue(replication->get(), row, 0)) == "sync") synchronous = true;
            lag = std::atof(PQgetvalue(replication->get(), row, 1));
          }
        }
      }
    }
    servers.push_back(entry);
  }
  json status{{"pool", pool.fqdn}, {"backend", "postgres"}, {"servers", servers}};
  status["synchronous"] = synchronous ? json(*synchronous) : json(nullptr);
  status["replay_lag_seconds"] = lag ? json(*lag) : json(nullptr);
  return status;
}

Result<json> BackendFailover(const PoolSpec& pool) {
  if (auto ok = RequirePostgresMirror(pool); !ok) return std::unexpected(ok.error());
  if (Connect(pool.backend.postgres_dsn)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("the primary of pool {} ({}) is still reachable; promoting its standby now would "
                                 "leave two primaries accepting writes. Stop the primary first; nothing was changed",
                                 pool.fqdn, HostOf(pool.backend.postgres_dsn)));
  }
  auto standby = Connect(pool.backend.postgres_mirror_dsn);
  if (!standby) {
    return MakeError(ErrorCode::kUnavailable, fmt::format("neither the primary nor the standby ({}) of pool {} is "
                                                          "reachable; nothing was changed",
                                                          HostOf(pool.backend.postgres_mirror_dsn), pool.fqdn));
  }
  auto recovery = Query(standby->get(), "SELECT pg_is_in_recovery()");
  if (!recovery) return std::unexpected(recovery.error());
  if (std::string_view(PQgetvalue(recovery->get(), 0, 0)) != "t") {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("{} is not a standby (it already accepts writes); nothing was changed",
                                 HostOf(pool.backend.postgres_mirror_dsn)));
  }
  auto started = std::chrono::steady_clock::now();
  auto promoted = Query(standby->get(), "SELECT pg_promote(wait => true, wait_seconds => 30)");
  if (!promoted || std::string_view(PQgetvalue(promoted->get(), 0, 0)) != "t") {
    return MakeError(ErrorCode::kUnavailable, fmt::format("promoting {} failed or did not finish in 30 s",
                                                          HostOf(pool.backend.postgres_mirror_dsn)));
  }
  // A standby copied from a primary with synchronous_standby_names inherits it, and
  // once promoted would block every commit waiting for a standby it lacks.
  (void)Query(standby->get(), "ALTER SYSTEM RESET synchronous_standby_names");
  (void)Query(standby->get(), "SELECT pg_reload_conf()");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return json{{"pool", pool.fqdn},
              {"promoted", HostOf(pool.backend.postgres_mirror_dsn)},
              {"seconds", seconds},
              {"note", "servers reconnect to the new primary by themselves"}};
}

}  // namespace tandem
