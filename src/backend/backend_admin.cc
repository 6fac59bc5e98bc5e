#include "backend/backend_admin.h"

#include <chrono>
#include <map>

#include <fmt/format.h>

#include "backend/postgres_probe.h"

namespace tandem {

using nlohmann::json;

namespace {

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

// Once the primary is gone the standby cannot tell whether it was synchronous; only
// what was seen while the primary lived can.
Status RequireObservedSynchronous(const PoolSpec& pool, const std::optional<SyncObservation>& last_observed,
                                  std::chrono::system_clock::time_point now) {
  const std::string standby = HostOf(pool.backend.postgres_mirror_dsn);
  if (!last_observed) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("refusing to promote {}, the standby of pool {}: this server never saw the primary "
                                 "report it as synchronous, so it may lack acknowledged writes; nothing was changed: ask a "
                                 "server that watched the pair, restart the primary, or, accepting the loss, promote "
                                 "the standby by hand (SELECT pg_promote())",
                                 standby, pool.fqdn));
  }
  if (last_observed->sync_state != "sync") {
    double age = std::chrono::duration<double>(now - last_observed->observed_at).count();
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("refusing to promote {}, the standby of pool {}: the primary last reported it as "
                                 "'{}', not synchronous ({:.0f} s ago), so it may lack acknowledged writes; nothing "
                                 "was changed: restart the primary (it holds them) or, accepting the loss, promote "
                                 "the standby by hand (SELECT pg_promote())",
                                 standby, pool.fqdn, last_observed->sync_state, age));
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
    if (auto conn = ConnectBriefly(*dsn)) {
      auto recovery = IsInRecovery(conn->get());
      bool standby = recovery && *recovery;
      entry["role"] = standby ? "standby" : "primary";
      if (!standby) {
        if (auto replication = QueryReplicationState(conn->get())) {
          synchronous = replication->sync_state == "sync";
          lag = replication->replay_lag_seconds;
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

Result<json> BackendFailover(const PoolSpec& pool, const std::optional<SyncObservation>& last_observed,
                             std::chrono::system_clock::time_point now) {
  if (auto ok = RequirePostgresMirror(pool); !ok) return std::unexpected(ok.error());
  if (ConnectBriefly(pool.backend.postgres_dsn)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("the primary of pool {} ({}) is still reachable; promoting its standby now would "
                                 "leave two primaries accepting writes. Stop the primary first; nothing was changed",
                                 pool.fqdn, HostOf(pool.backend.postgres_dsn)));
  }
  if (auto ok = RequireObservedSynchronous(pool, last_observed, now); !ok) return std::unexpected(ok.error());
  auto standby = ConnectBriefly(pool.backend.postgres_mirror_dsn);
  if (!standby) {
    return MakeError(ErrorCode::kUnavailable, fmt::format("neither the primary nor the standby ({}) of pool {} is "
                                                          "reachable; nothing was changed",
                                                          HostOf(pool.backend.postgres_mirror_dsn), pool.fqdn));
  }
  auto recovery = IsInRecovery(standby->get());
  if (!recovery) return std::unexpected(recovery.error());
  if (!*recovery) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("{} is not a standby (it already accepts writes); nothing was changed",
                                 HostOf(pool.backend.postgres_mirror_dsn)));
  }
  auto started = std::chrono::steady_clock::now();
  auto promoted = RunQuery(standby->get(), "SELECT pg_promote(wait => true, wait_seconds => 30)");
  if (!promoted || std::string_view(PQgetvalue(promoted->get(), 0, 0)) != "t") {
    return MakeError(ErrorCode::kUnavailable, fmt::format("promoting {} failed or did not finish in 30 s",
                                                          HostOf(pool.backend.postgres_mirror_dsn)));
  }
  // A standby copied from a primary with synchronous_standby_names inherits it, and
  // once promoted would block every commit waiting for a standby it lacks.
  (void)RunQuery(standby->get(), "ALTER SYSTEM RESET synchronous_standby_names");
  (void)RunQuery(standby->get(), "SELECT pg_reload_conf()");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return json{{"pool", pool.fqdn},
              {"promoted", HostOf(pool.backend.postgres_mirror_dsn)},
              {"seconds", seconds},
              {"last_seen_synchronous_seconds_ago",
               std::chrono::duration<double>(now - last_observed->observed_at).count()},
              {"note", "servers reconnect to the new primary by themselves"}};
}

}  // namespace tandem
