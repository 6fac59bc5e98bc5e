#include "backup/backup_link_server.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backup/backup_link.h"
#include "common/clock.h"
#include "common/hash.h"

namespace tandem {

std::string ImportErrorSettingKey(std::string_view source_pool, std::string_view module) {
  return fmt::format("backup.import_error.{}.{}", source_pool, module);
}

BackupLinkServer::BackupLinkServer(std::string local_pool, std::string data_dir, Store& store, CmsReplica& replica,
                               MetricsRegistry& metrics)
    : local_pool_(std::move(local_pool)),
      data_dir_(std::move(data_dir)),
      store_(store),
      replica_(replica),
      metrics_(metrics),
      refused_(metrics.GetCounter("tandem_backup_refused_requests_total",
                                  "Backup requests refused: unknown sender, bad signature, corrupt batch")) {}

void BackupLinkServer::RegisterRoutes(HttpServer& http) {
  constexpr auto kSigned = HttpServer::Access::kPublic;  // authenticated by the pairing signature instead
  http.Route("POST", "/backup/apply", [this](const HttpRequest& r) { return ApplyBatch(r); }, kSigned);
  http.Route("POST", "/backup/snapshot", [this](const HttpRequest& r) { return ApplySnapshot(r); }, kSigned);
  http.Route("GET", "/backup/import", [this](const HttpRequest& r) { return Progress(r); }, kSigned);
  http.Route("POST", "/backup/digest", [this](const HttpRequest& r) { return Digest(r); }, kSigned);
  http.Route("GET", "/backup/keys", [this](const HttpRequest& r) { return Keys(r); }, kSigned);
}

std::expected<LinkSender, HttpResponse> BackupLinkServer::Authenticate(const HttpRequest& request,
                                                                      const BatchParams& params, bool module_required) {
  auto param = [&](const char* name) {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  };
  Sender sender{param("source"), param("module")};
  auto refuse = [&](int status, std::string reason) {
    refused_->Increment();
    spdlog::warn("backup: refused {} from {} ({}): {}", request.path, request.remote_address, sender.source_pool,
                 reason);
    return std::unexpected(HttpResponse::Error(status, reason));
  };
  auto cms = replica_.Current();
  auto pairing = PairingOf(cms.topology, local_pool_, *cms.document);
  if (!pairing) return refuse(409, pairing.error().message);
  if (sender.source_pool != pairing->partner->fqdn) {
    return refuse(403, fmt::format("pool {} is not the backup pool of {}", sender.source_pool, local_pool_));
  }
  if (module_required && std::find(pairing->import_modules.begin(), pairing->import_modules.end(), sender.module) ==
                             pairing->import_modules.end()) {
    return refuse(403, fmt::format("pool {} does not import module '{}' from {}", local_pool_, sender.module,
                                   sender.source_pool));
  }
  auto secret = LoadOrCreatePairingSecret(data_dir_, local_pool_, sender.source_pool);
  if (!secret) return refuse(503, "the pairing secret is unreadable: " + secret.error().message);
  if (!VerifyParams(*secret, request.path, params)) {
    // Recorded too: a wrong secret on one side is an operator error to show in status.
    if (module_required) (void)store_.SetSetting(ImportErrorSettingKey(sender.source_pool, sender.module),
                            "a request failed the pairing signature check (is the pairing secret the same on both "
                            "pools?)");
    return refuse(401, "the request is not signed with the pairing secret");
  }
  return sender;
}

HttpResponse BackupLinkServer::Fail(const Sender& sender, int status, const std::string& reason) {
  refused_->Increment();
  metrics_
      .GetCounter("tandem_backup_errors_total", "Backup batches that failed, per direction and module",
                  fmt::format("direction=\"import\",partner=\"{}\",module=\"{}\"", sender.source_pool, sender.module))
      ->Increment();
  spdlog::warn("backup: refused a batch of {} from {}: {}", sender.module, sender.source_pool, reason);
  (void)store_.SetSetting(ImportErrorSettingKey(sender.source_pool, sender.module), reason);
  return HttpResponse::Error(status, reason);
}

void BackupLinkServer::Succeeded(const Sender& sender, size_t bytes, const ImportProgress& progress) {
  std::string labels =
      fmt::format("direction=\"import\",partner=\"{}\",module=\"{}\"", sender.source_pool, sender.module);
  if (progress.source_at_ms > 0) {
    metrics_.GetGauge("tandem_backup_apply_delay_seconds",
                      "From the newest applied change's commit on the partner to its apply here", labels)
        ->Set(std::max<double>(0, (progress.applied_at_ms - progress.source_at_ms) / 1000.0));
  }
  metrics_.GetCounter("tandem_backup_batches_total", "Backup batches shipped or applied", labels)->Increment();
  metrics_.GetCounter("tandem_backup_bytes_total", "Compressed backup bytes shipped or applied", labels)
      ->Increment(bytes);
  std::string key = ImportErrorSettingKey(sender.source_pool, sender.module);
  auto error = store_.GetSetting(key);
  if (error && *error && !(*error)->empty()) (void)store_.SetSetting(key, "");
}

namespace {

nlohmann::json ProgressJson(const ImportProgress& progress) {
  return {{"applied_seq", progress.applied_seq},
          {"applied_at_ms", progress.applied_at_ms},
          {"source_at_ms", progress.source_at_ms},
          {"snapshot_seq", progress.snapshot_seq}};
}

Result<ImportProgress> FindImportProgress(Store& store, std::string_view source_pool, std::string_view module) {
  auto all = store.ListImportProgress();
  if (!all) return std::unexpected(all.error());
  ImportProgress found;
  for (const ImportProgress& progress : *all) {
    if (progress.source_pool == source_pool && progress.module == module) found = progress;
  }
  return found;
}

}  // namespace

HttpResponse BackupLinkServer::ApplyBatch(const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = Authenticate(request, params, /*module_required=*/true);
  if (!sender) return sender.error();
  auto changes = DecodeChanges(request.body, params["sha256"], kMaxBatchBytes);
  if (!changes) return Fail(*sender, 400, changes.error().message);
  // The batch follows what the sender believes we applied. Less here means this
  // copy was lost or restored from an older backup: the sender must start over with
  // a snapshot rather than leave a hole.
  auto before = FindImportProgress(store_, sender->source_pool, sender->module);
  if (!before) return HttpResponse::Error(503, before.error().message);
  // Sequences of another change log (the sender's store was rebuilt) are not ours
  // to compare: the sender must send a snapshot of its new log first.
  const std::string log_key = SourceLogSettingKey(sender->source_pool, sender->module);
  auto followed_log = store_.GetSetting(log_key);
  if (!followed_log) return HttpResponse::Error(503, followed_log.error().message);
  const std::string& log = params["log"];
  bool adopt_log = !log.empty() && (!*followed_log || (*followed_log)->empty());
  if (!log.empty() && !adopt_log && **followed_log != log) {
    spdlog::warn("backup: pool {} sent {} from change log {}, but this copy follows log {}: asking for a snapshot",
                 sender->source_pool, sender->module, log, **followed_log);
    return HttpResponse::Error(409, fmt::format("pool {}'s copy of {} follows another change log of pool {} (its "
                                                "store was rebuilt): a snapshot is needed",
                                                local_pool_, sender->module, sender->source_pool));
  }
  int64_t after = std::atoll(params["after"].c_str());
  if (before->applied_seq < after) {
    spdlog::warn("backup: pool {} sent {} after sequence {}, but this pool applied only up to {}: asking for a "
                 "snapshot",
                 sender->source_pool, sender->module, after, before->applied_seq);
    return HttpResponse::Error(409, fmt::format("pool {} has applied {} only up to sequence {}, not {}: a snapshot "
                                                "is needed",
                                                local_pool_, sender->module, before->applied_seq, after));
  }
  auto progress = store_.ApplyChanges(sender->source_pool, sender->module, *changes);
  if (!progress) {
    return Fail(*sender, progress.error().code == ErrorCode::kInvalidArgument ? 400 : 503, progress.error().message);
  }
  // A copy made before logs had identities follows the sender's log from now on.
  if (adopt_log) (void)store_.SetSetting(log_key, log);
  Succeeded(*sender, request.body.size(), *progress);
  return HttpResponse::Json(200, ProgressJson(*progress).dump());
}

HttpResponse BackupLinkServer::ApplySnapshot(const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = Authenticate(request, params, /*module_required=*/true);
  if (!sender) return sender.error();
  auto chunk = DecodeSnapshotChunk(request.body, params["sha256"], kMaxBatchBytes);
  if (!chunk) return Fail(*sender, 400, chunk.error().message);
  int64_t snapshot_seq = std::atoll(params["snapshot_seq"].c_str());
  auto progress = store_.ApplySnapshotChunk(sender->source_pool, sender->module, params["home_pool"], snapshot_seq,
                                            params["first"] == "1", params["last"] == "1", *chunk);
  if (!progress) {
    return Fail(*sender, progress.error().code == ErrorCode::kInvalidArgument ? 400 : 503, progress.error().message);
  }
  // The copy follows the log the snapshot was taken from. Recorded after the last
  // chunk is applied: a crash in between costs one more snapshot, never a hole.
  if (params["last"] == "1" && !params["log"].empty()) {
    if (auto set = store_.SetSetting(SourceLogSettingKey(sender->source_pool, sender->module), params["log"]); !set) {
      return Fail(*sender, 503, set.error().message);
    }
  }
  Succeeded(*sender, request.body.size(), *progress);
  return HttpResponse::Json(200, ProgressJson(*progress).dump());
}


HttpResponse BackupLinkServer::Progress(const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = Authenticate(request, params, /*module_required=*/true);
  if (!sender) return sender.error();
  auto progress = FindImportProgress(store_, sender->source_pool, sender->module);
  if (!progress) return HttpResponse::Error(503, progress.error().message);
  auto followed_log = store_.GetSetting(SourceLogSettingKey(sender->source_pool, sender->module));
  if (!followed_log) return HttpResponse::Error(503, followed_log.error().message);
  nlohmann::json answer = ProgressJson(*progress);
  answer["source_log"] = followed_log->value_or("");
  return HttpResponse::Json(200, answer.dump());
}

// Body {"home_pool": P, "ranges": [[from, to], ...]}; answers the digest of each
// range and what this pool applied of the sender's module.
HttpResponse BackupLinkServer::Digest(const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = Authenticate(request, params, /*module_required=*/true);
  if (!sender) return sender.error();
  if (!ConstantTimeEquals(Sha256Hex(request.body), params["sha256"])) {
    return HttpResponse::Error(400, "the request body does not match its checksum");
  }
  auto body = nlohmann::json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("ranges") || !body["ranges"].is_array()) {
    return HttpResponse::Error(400, "expected {\"home_pool\": ..., \"ranges\": [[from, to], ...]}");
  }
  std::string home_pool = body.value("home_pool", "");
  // The progress first: rows read after it are at least that fresh.
  auto progress = FindImportProgress(store_, sender->source_pool, sender->module);
  if (!progress) return HttpResponse::Error(503, progress.error().message);
  nlohmann::json digests = nlohmann::json::array();
  for (const auto& range : body["ranges"]) {
    if (!range.is_array() || range.size() != 2 || !range[0].is_string() || !range[1].is_string()) {
      return HttpResponse::Error(400, "a range is not [from, to]");
    }
    auto digest = DigestRows(store_, sender->module, home_pool, range[0].get<std::string>(),
                             range[1].get<std::string>());
    if (!digest) return HttpResponse::Error(503, digest.error().message);
    digests.push_back({{"rows", digest->rows}, {"sha256", digest->sha256}});
  }
  return HttpResponse::Json(
      200, nlohmann::json{{"applied_seq", progress->applied_seq}, {"digests", digests}}.dump());
}

// ?home_pool&from&to: [key, sha256 of payload] of every row in [from, to).
HttpResponse BackupLinkServer::Keys(const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = Authenticate(request, params, /*module_required=*/true);
  if (!sender) return sender.error();
  nlohmann::json rows = nlohmann::json::array();
  auto scanned = store_.ScanRows(sender->module, params["home_pool"], params["from"], params["to"], 5000,
                                 [&](std::vector<ReplicatedRow>&& chunk) -> Status {
                                   for (const ReplicatedRow& row : chunk) rows.push_back({row.key, Sha256Hex(row.payload)});
                                   return OkStatus();
                                 });
  if (!scanned) return HttpResponse::Error(503, scanned.error().message);
  return HttpResponse::Json(200, nlohmann::json{{"rows", rows}}.dump());
}

}  // namespace tandem
