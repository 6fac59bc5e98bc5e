#include "backend/backend_service.h"

#include <set>

#include <spdlog/spdlog.h>

#include "backend/backend_admin.h"

namespace tandem {

using nlohmann::json;

BackendService::BackendService(BackendServiceOptions options, CmsReplica& replica, const Clock& clock)
    : options_(std::move(options)), replica_(replica), clock_(clock), memory_(options_.observations_path) {}

BackendService::~BackendService() { Stop(); }

void BackendService::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void BackendService::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackendService::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    WatchOnce();
    lock.lock();
    wake_.wait_for(lock, options_.watch_interval, [this] { return stopping_; });
  }
}

void BackendService::WatchOnce() {
  auto topology = replica_.Current().topology;
  std::set<std::string> watched;
  for (const PoolSpec& pool : topology->pools) {
    if (pool.backend.type != BackendType::kPostgres || pool.backend.postgres_mirror_dsn.empty()) continue;
    watched.insert(pool.fqdn);
    auto& [dsn, conn] = primaries_[pool.fqdn];
    if (dsn != pool.backend.postgres_dsn || !conn || PQstatus(conn.get()) != CONNECTION_OK) {
      dsn = pool.backend.postgres_dsn;
      auto opened = ConnectBriefly(dsn);
      conn = opened ? std::move(*opened) : nullptr;
      if (!conn) continue;  // an unreachable primary says nothing: the last word stands
    }
    auto in_recovery = IsInRecovery(conn.get());
    if (in_recovery && *in_recovery) continue;  // the topology's primary is a standby now: not the pair it names
    auto state = in_recovery ? QueryReplicationState(conn.get())
                             : Result<ReplicationState>(std::unexpected(in_recovery.error()));
    if (!state) {
      conn.reset();  // broken (the primary died?): reconnect next round
      continue;
    }
    SyncObservation observation{.primary = HostOf(pool.backend.postgres_dsn),
                                .standby = HostOf(pool.backend.postgres_mirror_dsn),
                                .sync_state = state->sync_state,
                                .observed_at = clock_.Now()};
    if (auto last = memory_.Last(pool); !last || last->sync_state != observation.sync_state) {
      spdlog::info("backend: the primary of pool {} reports its standby as '{}'", pool.fqdn, observation.sync_state);
    }
    memory_.Record(pool.fqdn, observation);
  }
  std::erase_if(primaries_, [&watched](const auto& entry) { return !watched.contains(entry.first); });
}

void BackendService::RegisterRoutes(HttpServer& http) {
  // Any server may report on or fail over any pool's PostgreSQL pair; it connects to
  // the databases the topology names.
  http.Route("GET", "/backend/status", [this](const HttpRequest& request) {
    auto snapshot = replica_.Current();
    json pools = json::array();
    auto wanted = request.query.find("pool");
    for (const PoolSpec& pool : snapshot.topology->pools) {
      if (wanted != request.query.end() && wanted->second != pool.fqdn) continue;
      auto status = BackendStatus(pool);
      if (!status) return HttpResponse::Error(503, status.error().message);
      if (auto last = memory_.Last(pool)) {
        (*status)["last_observed"] = last->ToJson();
        (*status)["last_observed"]["age_seconds"] =
            std::chrono::duration<double>(clock_.Now() - last->observed_at).count();
      }
      pools.push_back(*status);
    }
    if (pools.empty()) return HttpResponse::Error(404, "no such pool in the topology");
    return HttpResponse::Json(200, json{{"pools", pools}}.dump());
  });
  http.Route("POST", "/backend/failover", [this](const HttpRequest& request) {
    auto snapshot = replica_.Current();
    auto wanted = request.query.find("pool");
    const PoolSpec* pool = wanted == request.query.end() ? nullptr : snapshot.topology->FindPool(wanted->second);
    if (pool == nullptr) return HttpResponse::Error(404, "name a pool of the topology with ?pool=FQDN");
    auto done = BackendFailover(*pool, memory_.Last(*pool), clock_.Now());
    if (!done) {
      return HttpResponse::Error(done.error().code == ErrorCode::kFailedPrecondition ? 409 : 503,
                                 done.error().message);
    }
    return HttpResponse::Json(200, done->dump());
  });
}

}  // namespace tandem
