#include "backup/backup_status.h"

#include <algorithm>

#include <fmt/format.h>

#include "backup/backup_link.h"
#include "backup/backup_link_server.h"
#include "backup/backup_shipper.h"

namespace tandem {
namespace {

std::string SettingOr(Store& store, const std::string& key, std::string fallback = "") {
  auto value = store.GetSetting(key);
  return value && *value ? **value : fallback;
}

Result<nlohmann::json> ExportView(Store& store, const Pairing& pairing, const std::string& module,
                                  const std::vector<ExportProgress>& exported, std::chrono::milliseconds sync_interval,
                                  int64_t now_ms) {
  const std::string& partner = pairing.partner->fqdn;
  auto head = store.ModuleHead(module);
  if (!head) return std::unexpected(head.error());
  auto acked = std::find_if(exported.begin(), exported.end(),
                            [&](const ExportProgress& e) { return e.partner_pool == partner && e.module == module; });
  int64_t applied = acked == exported.end() ? 0 : acked->acked_seq;
  double lag_seconds = 0;
  if (applied < head->seq) {
    // The age of the oldest change the partner has not acknowledged.
    auto oldest = store.ReadModuleChanges(module, applied, 1);
    if (!oldest) return std::unexpected(oldest.error());
    if (!oldest->empty()) lag_seconds = std::max<double>(0, (now_ms - oldest->front().at_ms) / 1000.0);
  }
  std::string error = SettingOr(store, ExportErrorSettingKey(partner, module));
  std::string initial_sync = SettingOr(store, InitialSyncSettingKey(partner, module));
  // Changes refused for the pool's own users (failover) and nothing left to ship:
  // the source is final.
  bool refusing_changes = !SettingOr(store, PersistentChangesRefusedKey(pairing.local->fqdn)).empty();
  int64_t divergent = 0;
  if (pairing.served_elsewhere) {
    constexpr int kMaxCounted = 100000;
    auto after = store.ReadModuleChanges(module, DivergenceCutoff(*pairing.served_elsewhere, module), kMaxCounted);
    if (!after) return std::unexpected(after.error());
    divergent = static_cast<int64_t>(after->size());
  }
  std::string state;
  if (!error.empty()) {
    state = "ErrorState";
  } else if (refusing_changes && (applied >= head->seq || (pairing.served_elsewhere &&
                                                          applied >= DivergenceCutoff(*pairing.served_elsewhere, module)))) {
    state = "FinalState";
  } else if (acked == exported.end()) {
    state = "NotInitialized";
  } else if (!initial_sync.empty() || lag_seconds * 1000 >= static_cast<double>(sync_interval.count())) {
    state = "NonSteadyState";
  } else {
    state = "SteadyState";
  }
  nlohmann::json view{{"export_state", state},        {"source_seq", head->seq}, {"source_at_ms", head->at_ms},
                      {"applied_seq", applied},        {"lag_seconds", lag_seconds}, {"last_error", error},
                      {"change_log", SettingOr(store, std::string(kChangeLogIdSetting))}};
  if (!initial_sync.empty()) view["initial_sync_rows_sent"] = std::atoll(initial_sync.c_str());
  if (divergent > 0) view["divergent_records"] = divergent;
  nlohmann::json set_aside = nlohmann::json::parse(SettingOr(store, DivergentRecordsSettingKey(module), "[]"), nullptr,
                                                   false);
  if (set_aside.is_array() && !set_aside.empty()) view["divergent_set_aside"] = set_aside.size();
  return view;
}

}  // namespace

std::string DivergentRecordsSettingKey(std::string_view module) {
  return fmt::format("backup.divergent.{}", module);
}

Result<int64_t> SetAsideDivergentRecords(Store& store, const Pairing& pairing, int64_t now_ms,
                                         const std::set<std::string>& rebuilt_modules) {
  if (!pairing.served_elsewhere) return 0;
  int64_t set_aside = 0;
  for (std::string_view module : {kUserModule, kConferenceModule}) {
    if (rebuilt_modules.contains(std::string(module))) continue;
    std::string key = DivergentRecordsSettingKey(module);
    nlohmann::json kept = nlohmann::json::parse(SettingOr(store, key, "[]"), nullptr, false);
    if (!kept.is_array()) kept = nlohmann::json::array();
    int64_t cursor = DivergenceCutoff(*pairing.served_elsewhere, module);
    for (int page = 0; page < 10000; ++page) {
      auto records = store.ReadModuleChanges(module, cursor, 1000);
      if (!records) return std::unexpected(records.error());
      if (records->empty()) break;
      for (const ChangeRecord& r : *records) {
        kept.push_back({{"seq", r.seq}, {"at_ms", r.at_ms}, {"home_pool", r.home_pool}, {"key", r.key},
                        {"op", r.op}, {"payload", r.payload}});
        cursor = r.seq;
        ++set_aside;
      }
    }
    // Saved first, then marked never to ship, then acknowledged (pruned): a crash in
    // between may save them twice, never loses them.
    if (auto saved = store.SetSetting(key, kept.dump()); !saved) return std::unexpected(saved.error());
    if (auto skipped = store.SetSetting(SkipThroughSettingKey(module), std::to_string(cursor)); !skipped) {
      return std::unexpected(skipped.error());
    }
    if (auto marked = store.RecordExportAck(pairing.partner->fqdn, module, cursor, now_ms); !marked) {
      return std::unexpected(marked.error());
    }
  }
  return set_aside;
}

Result<nlohmann::json> LocalBackupView(Store& store, const Pairing& pairing, std::chrono::milliseconds sync_interval,
                                       int64_t now_ms) {
  const std::string& partner = pairing.partner->fqdn;
  auto exported = store.ListExportProgress();
  if (!exported) return std::unexpected(exported.error());
  auto imported = store.ListImportProgress();
  if (!imported) return std::unexpected(imported.error());
  bool stopped = SettingOr(store, std::string(kBackupStoppedSetting)) == partner;

  nlohmann::json exports = nlohmann::json::object();
  for (const std::string& module : pairing.export_modules) {
    auto view = ExportView(store, pairing, module, *exported, sync_interval, now_ms);
    if (!view) return std::unexpected(view.error());
    if (stopped && (*view)["last_error"] == "") (*view)["last_error"] = "the Backup Service is stopped";
    exports[module] = std::move(*view);
  }
  nlohmann::json imports = nlohmann::json::object();
  for (const std::string& module : pairing.import_modules) {
    ImportProgress progress;
    for (const ImportProgress& p : *imported) {
      if (p.source_pool == partner && p.module == module) progress = p;
    }
    std::string error = SettingOr(store, ImportErrorSettingKey(partner, module));
    imports[module] = {{"import_state", error.empty() ? "NormalState" : "ErrorState"},
                       {"applied_seq", progress.applied_seq},
                       {"applied_at_ms", progress.applied_at_ms},
                       {"source_at_ms", progress.source_at_ms},
                       {"snapshot_seq", progress.snapshot_seq},
                       {"last_error", error},
                       {"source_log", SettingOr(store, SourceLogSettingKey(partner, module))}};
  }
  return nlohmann::json{{"pool", pairing.local->fqdn},
                        {"partner", partner},
                        {"service", stopped ? "stopped" : "running"},
                        {"export", std::move(exports)},
                        {"import", std::move(imports)}};
}

namespace {

nlohmann::json ModuleEntry(const std::string& module, const nlohmann::json& exported, const nlohmann::json& imported) {
  // What the target says it applied is the truth; the source's acknowledged
  // sequence stands in when the target cannot be asked.
  nlohmann::json applied = imported.contains("applied_seq") ? imported["applied_seq"]
                                                            : exported.value("applied_seq", nlohmann::json(0));
  std::string export_state = exported.value("export_state", "ErrorState");
  std::string error = exported.value("last_error", "");
  // A copy of another change log of the source (its store was rebuilt) holds no
  // position in this one, whatever sequence it reached there.
  nlohmann::json head = exported.value("source_seq", nlohmann::json());
  if (applied.is_number() && head.is_number() &&
      FollowsAnotherLog(applied.get<int64_t>(), imported.value("source_log", ""), exported.value("change_log", ""),
                        head.get<int64_t>())) {
    applied = 0;
    if (export_state != "ErrorState") export_state = "NonSteadyState";
    if (error.empty()) error = "the copy follows an earlier change log of the source (its store was rebuilt); a snapshot of this one is due";
  } else if (export_state == "SteadyState" && applied.is_number() && exported.contains("applied_seq") &&
      applied.get<int64_t>() < exported["applied_seq"].get<int64_t>()) {
    // The target lost part of what it acknowledged (restored from an older backup):
    // the shipper sends a snapshot at its next check.
    export_state = "NonSteadyState";
    error = "the copy holds less than it acknowledged; a snapshot is being sent";
  }
  nlohmann::json entry{{"module", module},
                       {"export_state", export_state},
                       {"import_state", imported.value("import_state", "ErrorState")},
                       {"source_seq", exported.value("source_seq", nlohmann::json())},
                       {"applied_seq", applied},
                       {"lag_seconds", exported.value("lag_seconds", nlohmann::json())}};
  if (error.empty()) error = imported.value("last_error", "");
  if (!error.empty()) entry["last_error"] = error;
  if (exported.contains("initial_sync_rows_sent")) entry["initial_sync_rows_sent"] = exported["initial_sync_rows_sent"];
  if (exported.contains("divergent_records")) entry["divergent_records"] = exported["divergent_records"];
  if (exported.contains("divergent_set_aside")) entry["divergent_set_aside"] = exported["divergent_set_aside"];
  return entry;
}

}  // namespace

nlohmann::json CombineBackupViews(const Pairing& pairing, const nlohmann::json& local,
                                  const Result<nlohmann::json>& remote, int64_t now_ms) {
  const std::string& pool = pairing.local->fqdn;
  const std::string& partner = pairing.partner->fqdn;
  std::string unreachable = remote ? "" : fmt::format("cannot reach pool {}: {}", partner, remote.error().message);
  auto unknown_side = [&] {
    // What the unreachable side would have said, as far as this side can tell.
    return nlohmann::json{{"export_state", "ErrorState"}, {"import_state", "ErrorState"}, {"last_error", unreachable}};
  };

  nlohmann::json outbound = nlohmann::json::array();
  for (const std::string& module : pairing.export_modules) {
    const nlohmann::json& exported = local["export"][module];
    nlohmann::json imported = remote ? (*remote)["import"].value(module, nlohmann::json::object()) : unknown_side();
    outbound.push_back(ModuleEntry(module, exported, imported));
  }
  nlohmann::json inbound = nlohmann::json::array();
  for (const std::string& module : pairing.import_modules) {
    const nlohmann::json& imported = local["import"][module];
    nlohmann::json exported;
    if (remote) {
      exported = (*remote)["export"].value(module, nlohmann::json::object());
    } else {
      // The partner's side is unknown: report what was applied and how old the
      // newest applied change is (the most a failover to this copy could miss is
      // everything after it).
      exported = unknown_side();
      exported["applied_seq"] = imported.value("applied_seq", int64_t{0});
      int64_t newest = imported.value("source_at_ms", int64_t{0});
      exported["lag_seconds"] = newest > 0 ? nlohmann::json(std::max<double>(0, (now_ms - newest) / 1000.0))
                                           : nlohmann::json();
    }
    inbound.push_back(ModuleEntry(module, exported, imported));
  }
  nlohmann::json services{{pool, local.value("service", "running")},
                          {partner, remote ? remote->value("service", "running") : "unknown"}};
  return nlohmann::json{{"pool", pool},
                        {"paired_pool", partner},
                        {"service", services},
                        {"directions",
                         {{{"from", pool}, {"to", partner}, {"modules", outbound}},
                          {{"from", partner}, {"to", pool}, {"modules", inbound}}}}};
}

}  // namespace tandem
