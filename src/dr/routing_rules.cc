#include "dr/routing_rules.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tandem {

std::string RoutingUpdate::ToJson() const {
  return nlohmann::json{{"action", action == Action::kFailover ? "failover" : "failback"},
                        {"pool", pool},
                        {"disaster", disaster},
                        {"applied_seq", applied_seq},
                        {"now_ms", now_ms}}
      .dump();
}

Result<RoutingUpdate> RoutingUpdate::FromJson(std::string_view json) {
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  auto bad = [] { return MakeError(ErrorCode::kInvalidArgument, "a routing update needs action, pool and disaster"); };
  if (!parsed.is_object() || !parsed.contains("action") || !parsed["action"].is_string() ||
      !parsed.contains("pool") || !parsed["pool"].is_string() || !parsed.contains("disaster") ||
      !parsed["disaster"].is_boolean()) {
    return bad();
  }
  RoutingUpdate update;
  std::string action = parsed["action"];
  if (action != "failover" && action != "failback") return bad();
  update.action = action == "failover" ? Action::kFailover : Action::kFailback;
  update.pool = parsed["pool"];
  update.disaster = parsed["disaster"];
  if (auto now = parsed.find("now_ms"); now != parsed.end() && now->is_number_integer()) update.now_ms = *now;
  if (auto applied = parsed.find("applied_seq"); applied != parsed.end() && applied->is_object()) {
    for (const auto& [module, seq] : applied->items()) {
      if (seq.is_number_integer()) update.applied_seq[module] = seq.get<int64_t>();
    }
  }
  return update;
}

Status CheckRoutingUpdate(const CmsDocument& document, const Topology& topology, const RoutingUpdate& update) {
  const PoolSpec* pool = topology.FindPool(update.pool);
  if (pool == nullptr) {
    return MakeError(ErrorCode::kNotFound, fmt::format("pool {} is not in the published topology; nothing changed",
                                                       update.pool));
  }
  auto routed = document.routing.find(update.pool);
  if (update.action == RoutingUpdate::Action::kFailback) {
    if (routed == document.routing.end()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("pool {} is not failed over: its users are served at home; nothing changed",
                                   update.pool));
    }
    return OkStatus();
  }
  if (!pool->backup_pool) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} has no backup pool to take its users over; pair it in the topology "
                                 "(backup_pool) and publish first; nothing changed",
                                 update.pool));
  }
  if (routed != document.routing.end()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} is already failed over to {}; fail it back first with `tandem pool "
                                 "failback --pool {}`; nothing changed",
                                 update.pool, routed->second.served_by, update.pool));
  }
  for (const auto& [home, routing] : document.routing) {
    if (routing.served_by == update.pool) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("pool {} is serving the users of pool {}; fail {} back first with `tandem pool "
                                   "failback --pool {}`; nothing changed",
                                   update.pool, home, home, home));
    }
  }
  if (update.disaster && document.master_pool == update.pool) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} holds the CMS master; fail the CMS over to {} first with `tandem cms "
                                 "failover --force`, then fail the pool over; nothing changed",
                                 update.pool, *pool->backup_pool));
  }
  return OkStatus();
}

void ApplyRoutingUpdate(CmsDocument& document, const Topology& topology, const RoutingUpdate& update) {
  if (update.action == RoutingUpdate::Action::kFailback) {
    document.routing.erase(update.pool);
  } else {
    document.routing[update.pool] = PoolRouting{.served_by = *topology.FindPool(update.pool)->backup_pool,
                                                .disaster = update.disaster,
                                                .since_ms = update.now_ms,
                                                .applied_seq = update.applied_seq};
  }
  ++document.routing_epoch;
}

}  // namespace tandem
