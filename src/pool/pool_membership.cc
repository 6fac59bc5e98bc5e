#include "pool/pool_membership.h"

#include <algorithm>
#include <future>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/peer_client.h"

namespace tandem {

using nlohmann::json;

namespace {

int64_t MillisOf(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now().time_since_epoch()).count();
}

}  // namespace

PoolMembership::PoolMembership(MembershipOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics,
                               const Clock& clock)
    : options_(std::move(options)),
      store_(store),
      replica_(replica),
      clock_(clock),
      live_servers_(metrics.GetGauge("tandem_pool_live_servers", "servers of this pool with an unexpired lease")),
      renew_failures_(metrics.GetCounter("tandem_pool_lease_renew_failures_total", "lease renewals that failed")) {}

PoolMembership::~PoolMembership() { Stop(); }

Status PoolMembership::Start() {
  if (auto first = RenewAndRefresh(); !first) return first;
  thread_ = std::thread([this] { Loop(); });
  return OkStatus();
}

void PoolMembership::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (auto released = store_.ReleaseLease(options_.server_id); !released) {
    spdlog::warn("pool: could not release the lease of {}: {}", options_.server_id, released.error().message);
  }
}

void PoolMembership::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Wake at the next renewal, or just after another server's lease runs out if
    // that comes first: its users are taken over without waiting for our renewal.
    auto wait = options_.renew_interval;
    if (next_expiry_ms_ > 0) {
      auto until_expiry = std::chrono::milliseconds(next_expiry_ms_ - MillisOf(clock_) + 5);
      wait = std::clamp(until_expiry, std::chrono::milliseconds(1), wait);
    }
    wake_.wait_for(lock, wait, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (auto renewed = RenewAndRefresh(); !renewed) {
      renew_failures_->Increment();
      spdlog::warn("pool: cannot renew the lease of {}: {}", options_.server_id, renewed.error().message);
    }
    lock.lock();
  }
}

Status PoolMembership::RenewAndRefresh() {
  int64_t now = MillisOf(clock_);
  auto renewed = store_.RenewLease({options_.server_id, options_.pool, now, now + options_.lease_expiry.count()});
  if (!renewed) return renewed;
  auto leases = store_.ListLeases(options_.pool);
  if (!leases) return std::unexpected(leases.error());
  std::vector<std::string> live;
  int64_t next_expiry = 0;
  for (const LeaseRecord& lease : *leases) {
    if (lease.expires_at_ms <= now) continue;
    live.push_back(lease.server_id);
    if (lease.server_id != options_.server_id && (next_expiry == 0 || lease.expires_at_ms < next_expiry)) {
      next_expiry = lease.expires_at_ms;
    }
  }
  RoutingGroupMap map(live);
  RoutingGroupMap before;
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    changed = !initialized_ || map.live_servers() != map_.live_servers();
    before = map_;
    leases_ = std::move(*leases);
    next_expiry_ms_ = next_expiry;
  }
  if (changed) {
    spdlog::info("pool {}: live servers now {}", options_.pool, fmt::join(map.live_servers(), ", "));
    // Only this thread (or Start, before it exists) gets here, so calls come in
    // order. The status shows the new map once the listener has taken it over.
    if (listener_) listener_(before, map);
    std::lock_guard lock(mu_);
    map_ = std::move(map);
    initialized_ = true;
    live_servers_->Set(static_cast<double>(map_.live_servers().size()));
  }
  return OkStatus();
}

RoutingGroupMap PoolMembership::Current() const {
  std::lock_guard lock(mu_);
  return map_;
}

json PoolMembership::LocalPoolStatus() {
  RoutingGroupMap map;
  std::vector<LeaseRecord> leases;
  {
    std::lock_guard lock(mu_);
    map = map_;
    leases = leases_;
  }
  auto snapshot = replica_.Current();
  int64_t now = MillisOf(clock_);
  auto groups = map.GroupCounts();
  json servers = json::array();
  std::vector<std::pair<json, std::future<Result<HttpResponse>>>> pending;
  for (const LeaseRecord& lease : leases) {
    bool live = lease.expires_at_ms > now;
    json entry{{"id", lease.server_id},
               {"live", live},
               {"lease_age_seconds", (now - lease.renewed_at_ms) / 1000.0},
               {"groups", live ? groups[lease.server_id] : 0},
               {"registered_users", nullptr}};
    const ServerSpec* spec = snapshot.topology->FindServer(lease.server_id);
    std::future<Result<HttpResponse>> call;
    if (live && spec != nullptr) {
      call = std::async(std::launch::async, [url = AdminUrlOf(*spec, "/status"), token = options_.admin_token] {
        return HttpCall("GET", url, "", {.token = token, .timeout = std::chrono::seconds(1)});
      });
    }
    pending.emplace_back(std::move(entry), std::move(call));
  }
  for (auto& [entry, call] : pending) {
    if (call.valid()) {
      auto response = call.get();
      if (response && response->status == 200) {
        auto body = json::parse(response->body, nullptr, false);
        if (body.is_object() && body.contains("sip")) entry["registered_users"] = body["sip"]["registered_users"];
        if (body.is_object() && body.contains("resiliency")) entry["resiliency"] = body["resiliency"];
      }
    }
    servers.push_back(std::move(entry));
  }
  return {{"pool", options_.pool}, {"live_servers", map.live_servers().size()}, {"servers", servers}};
}

void PoolMembership::RegisterRoutes(HttpServer& http) {
  http.Route("GET", "/pool/status", [this](const HttpRequest& request) {
    // ?local=1: this pool only (what other pools' servers ask); otherwise every pool.
    if (request.query.contains("local")) return HttpResponse::Json(200, LocalPoolStatus().dump());
    json pools = json::array();
    auto snapshot = replica_.Current();
    for (const PoolSpec& pool : snapshot.topology->pools) {
      if (pool.fqdn == options_.pool) {
        pools.push_back(LocalPoolStatus());
        continue;
      }
      auto response = CallAnyServerOf(pool, "GET", "/pool/status?local=1", "", {.token = options_.admin_token});
      auto body = response && response->status == 200 ? json::parse(response->body, nullptr, false) : json();
      if (body.is_object()) {
        pools.push_back(body);
      } else {
        pools.push_back({{"pool", pool.fqdn}, {"unreachable", true}});
      }
    }
    return HttpResponse::Json(200, json{{"pools", pools}}.dump());
  });
}

}  // namespace tandem
