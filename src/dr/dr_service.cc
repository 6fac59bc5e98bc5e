#include "dr/dr_service.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/peer_client.h"
#include "common/clock.h"
#include "dr/routing_rules.h"

namespace tandem {
namespace {

std::string Param(const HttpRequest& request, const char* name) {
  auto it = request.query.find(name);
  return it == request.query.end() ? "" : it->second;
}

}  // namespace

DrService::DrService(std::string admin_token, std::string local_pool, Store& store, CmsReplica& replica)
    : admin_token_(std::move(admin_token)), local_pool_(std::move(local_pool)), store_(store), replica_(replica) {}

void DrService::RegisterRoutes(HttpServer& http) {
  http.Route("GET", "/dr/check", [this](const HttpRequest& r) { return Check(r); });
  http.Route("POST", "/dr/refuse-changes", [this](const HttpRequest& r) { return RefuseChanges(r); });
  http.Route("GET", "/dr/serving", [this](const HttpRequest&) { return Serving(); });
}

HttpResponse DrService::Serving() {
  // A round trip to the store: a server whose back-end is down serves nobody, and
  // its pool's partner must see it as unreachable (resiliency mode).
  if (auto probe = store_.GetSetting("dr:serving-probe"); !probe) {
    return HttpResponse::Error(503, fmt::format("pool {} cannot use its store: {}", local_pool_, probe.error().message));
  }
  return HttpResponse::Json(200, nlohmann::json{{"pool", local_pool_}, {"serving", true}}.dump());
}

HttpResponse DrService::Check(const HttpRequest& request) {
  std::string action = Param(request, "action");
  if (action != "failover" && action != "failback") return HttpResponse::Error(400, "action must be failover or failback");
  RoutingUpdate update{action == "failover" ? RoutingUpdate::Action::kFailover : RoutingUpdate::Action::kFailback,
                       Param(request, "pool"), Param(request, "disaster") == "1", {}, NowUnixMillis()};
  auto snapshot = replica_.Current();
  if (auto allowed = CheckRoutingUpdate(*snapshot.document, *snapshot.topology, update); !allowed) {
    return HttpResponse::Error(allowed.error().code == ErrorCode::kNotFound ? 404 : 409, allowed.error().message);
  }
  const PoolSpec* pool = snapshot.topology->FindPool(update.pool);
  std::string partner = update.action == RoutingUpdate::Action::kFailover
                            ? pool->backup_pool.value_or("")
                            : snapshot.document->ServingPoolOf(update.pool);
  auto routed = snapshot.document->routing.find(update.pool);
  return HttpResponse::Json(200, nlohmann::json{{"pool", update.pool},
                                                {"partner", partner},
                                                {"failed_over_in_disaster_mode",
                                                 routed != snapshot.document->routing.end() && routed->second.disaster},
                                                {"cms_master", snapshot.master_pool()},
                                                {"routing_epoch", snapshot.document->routing_epoch},
                                                {"cms_version", snapshot.document->version}}
                                     .dump());
}

HttpResponse DrService::RefuseChanges(const HttpRequest& request) {
  auto snapshot = replica_.Current();
  std::string pool = Param(request, "pool");
  if (pool != local_pool_) {
    const PoolSpec* target = snapshot.topology->FindPool(pool);
    if (target == nullptr) return HttpResponse::Error(404, fmt::format("pool {} is not in the topology", pool));
    auto answer = ForwardToPool(*target, request, {.token = admin_token_, .timeout = std::chrono::seconds(10)});
    return answer ? *answer : HttpResponse::Error(503, answer.error().message);
  }
  std::string home = Param(request, "home");
  std::string state = Param(request, "state");
  if (snapshot.topology->FindPool(home) == nullptr || (state != "on" && state != "off")) {
    return HttpResponse::Error(400, "name a home pool of the topology (home=FQDN) and state=on|off");
  }
  std::string reason = state == "on" ? Param(request, "reason") : "";
  if (state == "on" && reason.empty()) reason = "a pool failover or failback is in progress";
  if (auto set = store_.SetSetting(PersistentChangesRefusedKey(home), reason); !set) {
    return HttpResponse::Error(503, set.error().message);
  }
  spdlog::info("dr: pool {} {} persistent changes for users of pool {}{}", local_pool_,
               state == "on" ? "refuses" : "accepts again", home, reason.empty() ? "" : ": " + reason);
  return HttpResponse::Json(200, nlohmann::json{{"pool", local_pool_}, {"home", home}, {"refused", state == "on"}}.dump());
}

}  // namespace tandem
