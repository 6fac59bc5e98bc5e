#include "backend/standby_sync_memory.h"

#include <spdlog/spdlog.h>

#include "backend/postgres_probe.h"
#include "common/file_util.h"

namespace tandem {

using nlohmann::json;

namespace {

constexpr auto kRefreshPersistedAfter = std::chrono::seconds(30);

bool SameState(const SyncObservation& a, const SyncObservation& b) {
  return a.primary == b.primary && a.standby == b.standby && a.sync_state == b.sync_state;
}

}  // namespace

json SyncObservation::ToJson() const {
  return json{{"primary", primary},
              {"standby", standby},
              {"sync_state", sync_state},
              {"observed_at", std::chrono::duration<double>(observed_at.time_since_epoch()).count()}};
}

std::optional<SyncObservation> SyncObservation::FromJson(const json& value) {
  if (!value.is_object()) return std::nullopt;
  for (const char* key : {"primary", "standby", "sync_state"}) {
    if (!value.contains(key) || !value[key].is_string()) return std::nullopt;
  }
  if (!value.contains("observed_at") || !value["observed_at"].is_number()) return std::nullopt;
  SyncObservation observation{.primary = value["primary"], .standby = value["standby"],
                              .sync_state = value["sync_state"]};
  observation.observed_at = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(value["observed_at"].get<double>())));
  return observation;
}

StandbySyncMemory::StandbySyncMemory(std::string path) : path_(std::move(path)) {
  auto text = ReadFile(path_);
  if (!text) {
    if (text.error().code != ErrorCode::kNotFound) spdlog::warn("backend: {}; starting with no observations", text.error().message);
    return;
  }
  // The file is ours, but a damaged one must not stop the server: it only costs the memory.
  json document = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object() || !document.contains("pools") || !document["pools"].is_object()) {
    spdlog::warn("backend: {} is not a standby observation file; starting with no observations", path_);
    return;
  }
  for (const auto& [pool, value] : document["pools"].items()) {
    if (auto observation = SyncObservation::FromJson(value)) last_[pool] = *observation;
  }
  persisted_ = last_;
}

void StandbySyncMemory::Record(const std::string& pool, const SyncObservation& observation) {
  std::lock_guard lock(mu_);
  last_[pool] = observation;
  auto on_file = persisted_.find(pool);
  if (on_file != persisted_.end() && SameState(on_file->second, observation) &&
      observation.observed_at - on_file->second.observed_at < kRefreshPersistedAfter) {
    return;
  }
  Persist();
}

std::optional<SyncObservation> StandbySyncMemory::Last(const PoolSpec& pool) const {
  std::lock_guard lock(mu_);
  auto found = last_.find(pool.fqdn);
  if (found == last_.end() || found->second.primary != HostOf(pool.backend.postgres_dsn) ||
      found->second.standby != HostOf(pool.backend.postgres_mirror_dsn)) {
    return std::nullopt;
  }
  return found->second;
}

void StandbySyncMemory::Persist() {
  json pools = json::object();
  for (const auto& [pool, observation] : last_) pools[pool] = observation.ToJson();
  if (auto written = WriteFileAtomically(path_, json{{"pools", pools}}.dump(2) + "\n"); !written) {
    // Memory still holds it; only a restart before the next write would forget.
    spdlog::warn("backend: cannot save standby observations: {}", written.error().message);
    return;
  }
  persisted_ = last_;
}

}  // namespace tandem
