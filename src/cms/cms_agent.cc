#include "cms/cms_agent.h"

#include <algorithm>
#include <future>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/peer_client.h"

namespace tandem {

using nlohmann::json;

namespace {

int HttpStatusFor(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument: return 422;
    case ErrorCode::kAlreadyExists: return 409;
    case ErrorCode::kFailedPrecondition: return 409;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kTimeout: return 504;
    default: return 500;
  }
}

std::string Param(const HttpRequest& request, const char* name, std::string fallback = "") {
  auto it = request.query.find(name);
  return it == request.query.end() ? fallback : it->second;
}

// An integer query parameter; `fallback` when absent or malformed.
int64_t IntParam(const HttpRequest& request, const char* name, int64_t fallback) {
  std::string text = Param(request, name);
  char* end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  return text.empty() || *end != '\0' ? fallback : value;
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// One entry of kCmsDivergentSetting: what an operator needs to see and re-publish.
json DivergentEntry(const CmsDocument& document, int64_t superseded_by_epoch) {
  return {{"version", document.version},
          {"master_epoch", document.master_epoch},
          {"master_pool", document.master_pool},
          {"published_at_ms", document.published_at_ms},
          {"topology_file", document.topology_file},
          {"superseded_by_epoch", superseded_by_epoch},
          {"set_aside_at_ms", NowUnixMillis()},
          {"document", document.ToJson()}};
}

}  // namespace

json CmsAgent::Head::ToJson() const {
  return {{"version", version},
          {"master_epoch", master_epoch},
          {"master_pool", master_pool},
          {"published_at_ms", published_at_ms}};
}

CmsAgent::CmsAgent(CmsAgentOptions options, CmsReplica& replica, Store& pool_store, MetricsRegistry& metrics)
    : options_(std::move(options)),
      replica_(replica),
      store_(pool_store),
      sync_failures_(metrics.GetCounter("tandem_cms_sync_failures_total", "CMS replica syncs that failed")),
      replica_version_(metrics.GetGauge("tandem_cms_replica_version", "CMS version held by this server's replica")) {
  replica_version_->Set(static_cast<double>(replica_.Current().document->version));
}

CmsAgent::~CmsAgent() { Stop(); }

std::string CmsAgent::LocalPool(const CmsReplica::Snapshot& snapshot) const {
  const PoolSpec* pool = nullptr;
  return snapshot.topology->FindServer(options_.server_id, &pool) != nullptr ? pool->fqdn : std::string();
}

bool CmsAgent::IsMasterPool(const CmsReplica::Snapshot& snapshot) const {
  std::string pool = LocalPool(snapshot);
  return !pool.empty() && IsCmsMasterPool(snapshot, pool);
}

Status CmsAgent::BootstrapIfEmpty() {
  auto snapshot = replica_.Current();
  if (!IsMasterPool(snapshot)) return OkStatus();
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  if (latest->has_value()) return SyncFromStore();
  // An empty store here is a new deployment, or a master pool that lost its store
  // and came back after a CMS failover: then its standby serves a higher epoch
  // naming another master, to be followed rather than a second CMS started.
  if (const PoolSpec* standby = snapshot.topology->BackupPoolOf(LocalPool(snapshot))) {
    auto newer = FetchNewer(*standby, *snapshot.document);
    if (newer && newer->has_value() && (*newer)->master_epoch > snapshot.document->master_epoch) {
      auto installed = InstallNewer(std::move(**newer), fmt::format("standby pool {}", standby->fqdn));
      if (!installed) return std::unexpected(installed.error());
      if (!IsMasterPool(replica_.Current())) {
        spdlog::info("CMS: the store is empty and {} is the CMS master now (epoch {}); following it",
                     replica_.Current().master_pool(), replica_.Current().document->master_epoch);
        return OkStatus();
      }
    }
  }
  CmsDocument first = *snapshot.document;
  first.version = 1;
  first.published_at_ms = NowUnixMillis();
  auto appended = store_.AppendCmsVersion({first.version, first.published_at_ms, first.ToJson()}, 0);
  if (!appended && appended.error().code != ErrorCode::kAlreadyExists) return appended;
  if (appended) spdlog::info("CMS: published the bootstrap topology as version 1");
  return SyncFromStore();
}

void CmsAgent::Start() {
  thread_ = std::thread([this] { SyncLoop(); });
}

void CmsAgent::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CmsAgent::WakeUp() {
  {
    std::lock_guard lock(mu_);
    wake_requested_ = true;
  }
  wake_.notify_all();
}

void CmsAgent::SyncLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_requested_ = false;
    lock.unlock();
    SyncOnce();
    lock.lock();
    wake_.wait_for(lock, options_.poll_interval, [this] { return stopping_ || wake_requested_; });
  }
}

void CmsAgent::SyncOnce() {
  auto snapshot = replica_.Current();
  if (IsMasterPool(snapshot)) {
    RecordSync(SyncFromStore());
    CheckStandbyForNewerEpoch(replica_.Current());
  } else {
    RecordSync(SyncFromMasterPools(snapshot));
  }
}

void CmsAgent::RecordSync(const Status& status) {
  std::lock_guard lock(status_mu_);
  master_reachable_ = status.has_value();
  if (status) {
    last_sync_ok_ = std::chrono::steady_clock::now();
    last_sync_error_.clear();
  } else {
    if (last_sync_error_ != status.error().message) {
      spdlog::warn("CMS: cannot sync the replica: {}; serving version {} from the replica",
                   status.error().message, replica_.Current().document->version);
    }
    last_sync_error_ = status.error().message;
    sync_failures_->Increment();
  }
}

Result<bool> CmsAgent::InstallNewer(CmsDocument document, std::string_view source) {
  std::lock_guard lock(install_mu_);
  auto current = replica_.Current();
  if (!document.IsNewerThan(*current.document)) return false;
  auto incoming = CmsReplica::MakeSnapshot(document);  // fills in master_pool of old documents
  if (!incoming) return std::unexpected(incoming.error());
  const CmsDocument& newer = *incoming->document;
  bool master_moves = newer.master_pool != current.master_pool();
  // Stepping down: what this pool published that the new master never got is kept
  // apart first, so that it is neither lost nor mixed with the new master's versions.
  if (master_moves && IsMasterPool(current)) {
    if (auto set_aside = SetAsideDivergentVersions(newer); !set_aside) return std::unexpected(set_aside.error());
  }
  auto installed = replica_.Install(newer);
  if (!installed || !*installed) return installed;
  replica_version_->Set(static_cast<double>(newer.version));
  if (master_moves || newer.master_epoch != current.document->master_epoch) {
    spdlog::warn("CMS: the CMS master is now pool {} (epoch {}, was {} epoch {}); replica at version {} (from {})",
                 newer.master_pool, newer.master_epoch, current.master_pool(), current.document->master_epoch,
                 newer.version, source);
  } else {
    spdlog::info("CMS: replica now at version {} (from {})", newer.version, source);
  }
  return true;
}

Status CmsAgent::SetAsideDivergentVersions(const CmsDocument& newer) {
  std::vector<CmsVersionRecord> stale;
  std::vector<CmsDocument> stale_documents;
  auto scanned = store_.ScanRows(
      "cms", "", CmsVersionChangeKey(newer.epoch_start_version), "", 100,
      [&](std::vector<ReplicatedRow>&& rows) -> Status {
        for (const ReplicatedRow& row : rows) {
          auto payload = json::parse(row.payload, nullptr, false);
          if (!payload.is_object() || !payload.contains("document") || !payload["document"].is_string()) {
            return MakeError(ErrorCode::kCorruption, fmt::format("CMS row {} does not parse", row.key));
          }
          auto document = CmsDocument::FromJson(payload["document"].get<std::string>());
          if (!document) return std::unexpected(document.error());
          // The new master's own versions (shipped here already) have its epoch.
          if (document->master_epoch >= newer.master_epoch) continue;
          stale.push_back({payload.value("version", int64_t{0}), payload.value("published_at_ms", int64_t{0}),
                           payload["document"].get<std::string>()});
          stale_documents.push_back(std::move(*document));
        }
        return OkStatus();
      });
  if (!scanned) return std::unexpected(scanned.error());
  if (stale.empty()) return OkStatus();

  // Recorded before removal: a crash in between leaves them recorded twice at
  // worst (deduplicated here), never lost.
  auto recorded = store_.GetSetting(kCmsDivergentSetting);
  if (!recorded) return std::unexpected(recorded.error());
  json entries = recorded->has_value() ? json::parse(**recorded, nullptr, false) : json::array();
  if (!entries.is_array()) entries = json::array();
  for (const CmsDocument& document : stale_documents) {
    bool known = std::any_of(entries.begin(), entries.end(), [&](const json& entry) {
      return entry.value("version", int64_t{0}) == document.version &&
             entry.value("master_epoch", int64_t{0}) == document.master_epoch &&
             entry.value("published_at_ms", int64_t{0}) == document.published_at_ms;
    });
    if (!known) entries.push_back(DivergentEntry(document, newer.master_epoch));
  }
  if (auto saved = store_.SetSetting(kCmsDivergentSetting, entries.dump()); !saved) return saved;
  if (auto removed = store_.RemoveCmsVersions(stale); !removed) return removed;
  spdlog::warn("CMS: pool {} stepped down as CMS master (epoch {} of pool {} supersedes it): versions {}..{} were "
               "published here after the failover point and never reached the new master; they are kept apart as "
               "divergent (see `tandem cms status`)",
               LocalPool(replica_.Current()), newer.master_epoch, newer.master_pool, stale.front().version,
               stale.back().version);
  return OkStatus();
}

Status CmsAgent::SyncFromStore() {
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  if (!latest->has_value()) return OkStatus();
  auto document = CmsDocument::FromJson((*latest)->document);
  if (!document) return std::unexpected(document.error());
  auto installed = InstallNewer(std::move(*document), "the pool's store");
  if (!installed) return std::unexpected(installed.error());
  return OkStatus();
}

Result<std::optional<CmsDocument>> CmsAgent::FetchNewer(const PoolSpec& pool, const CmsDocument& have) {
  std::string last_error = "it has no servers";
  for (const ServerSpec& server : pool.servers) {
    if (server.id == options_.server_id) continue;
    auto response = HttpCall(
        "GET", AdminUrlOf(server, fmt::format("/cms/document?have={}&epoch={}", have.version, have.master_epoch)), "",
        {.token = options_.admin_token, .timeout = options_.peer_timeout});
    if (!response) {
      last_error = response.error().message;
      continue;
    }
    if (response->status == 204) return std::optional<CmsDocument>();  // nothing newer
    if (response->status != 200) {
      last_error = fmt::format("{} answered HTTP {}", server.id, response->status);
      continue;
    }
    auto document = CmsDocument::FromJson(response->body);
    if (!document) return std::unexpected(document.error());
    return std::optional<CmsDocument>(std::move(*document));
  }
  return MakeError(ErrorCode::kUnavailable, fmt::format("pool {} is unreachable: {}", pool.fqdn, last_error));
}

Status CmsAgent::SyncFromMasterPools(const CmsReplica::Snapshot& snapshot) {
  const PoolSpec* master = snapshot.topology->FindPool(snapshot.master_pool());
  if (master == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("the CMS master pool {} is not in the topology", snapshot.master_pool()));
  }
  // The standby is asked too: after a failover whose push this server missed, the
  // old master may be gone (or stale), and the new master is the old one's partner.
  const PoolSpec* standby = snapshot.topology->BackupPoolOf(master->fqdn);
  Status master_status = OkStatus();
  for (const PoolSpec* pool : {master, standby}) {
    if (pool == nullptr) continue;
    auto newer = FetchNewer(*pool, *replica_.Current().document);
    if (!newer) {
      if (pool == master) {
        master_status = MakeError(ErrorCode::kUnavailable,
                                  fmt::format("CMS master pool {} is unreachable: {}", master->fqdn,
                                              newer.error().message));
      }
      continue;
    }
    if (!newer->has_value()) continue;
    auto installed = InstallNewer(std::move(**newer), fmt::format("pool {}", pool->fqdn));
    if (!installed) return std::unexpected(installed.error());
  }
  return master_status;
}

void CmsAgent::CheckStandbyForNewerEpoch(const CmsReplica::Snapshot& snapshot) {
  const PoolSpec* standby = snapshot.topology->BackupPoolOf(snapshot.master_pool());
  if (standby == nullptr) return;
  auto newer = FetchNewer(*standby, *snapshot.document);
  // Only a higher epoch counts: the standby holds nothing newer of this master's.
  if (!newer || !newer->has_value() || (*newer)->master_epoch <= snapshot.document->master_epoch) return;
  if (auto installed = InstallNewer(std::move(**newer), fmt::format("standby pool {}", standby->fqdn)); !installed) {
    spdlog::error("CMS: cannot step down as CMS master: {}", installed.error().message);
  }
}

Result<std::optional<CmsAgent::Head>> CmsAgent::StoreHead() {
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  if (!latest->has_value()) return std::optional<Head>();
  auto document = CmsDocument::FromJson((*latest)->document);
  if (!document) return std::unexpected(document.error());
  auto snapshot = CmsReplica::MakeSnapshot(std::move(*document));
  if (!snapshot) return std::unexpected(snapshot.error());
  const CmsDocument& d = *snapshot->document;
  return std::optional<Head>(Head{d.version, d.master_epoch, d.master_pool, d.published_at_ms});
}

Result<CmsAgent::Head> CmsAgent::PoolHead(const PoolSpec& pool) {
  // Asked of every server at once: a hung server must not stretch a failover check.
  std::vector<std::future<Result<HttpResponse>>> calls;
  for (const ServerSpec& server : pool.servers) {
    calls.push_back(std::async(std::launch::async, [this, url = AdminUrlOf(server, "/cms/head")] {
      return HttpCall("GET", url, "", {.token = options_.admin_token, .timeout = options_.peer_timeout});
    }));
  }
  std::string last_error = "it has no servers";
  std::optional<Head> head;
  for (auto& call : calls) {
    auto response = call.get();
    if (!response) {
      last_error = response.error().message;
      continue;
    }
    auto body = json::parse(response->body, nullptr, false);
    if (response->status != 200 || !body.is_object()) {
      last_error = body.is_object() ? body.value("error", fmt::format("HTTP {}", response->status))
                                    : fmt::format("HTTP {}", response->status);
      continue;
    }
    if (!head) {
      head = Head{body.value("version", int64_t{0}), body.value("master_epoch", int64_t{0}),
                  body.value("master_pool", std::string()), body.value("published_at_ms", int64_t{0})};
    }
  }
  if (head) return *head;
  return MakeError(ErrorCode::kUnavailable, fmt::format("pool {} is unreachable ({})", pool.fqdn, last_error));
}

Result<int64_t> CmsAgent::Publish(const std::string& toml, const std::string& file_name, bool forwarded) {
  TopologyParseResult parsed = ParseTopology(toml, file_name);
  if (parsed.HasErrors()) {
    std::string message = "the topology is invalid; nothing was published:";
    for (const Diagnostic& diagnostic : parsed.diagnostics) message += "\n" + diagnostic.ToString();
    return MakeError(ErrorCode::kInvalidArgument, message);
  }
  auto snapshot = replica_.Current();
  if (parsed.topology->FindPool(snapshot.master_pool()) == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("the topology must keep pool {}: it is the CMS master; nothing was published",
                                 snapshot.master_pool()));
  }
  if (IsMasterPool(snapshot)) return PublishLocally(toml, file_name);
  if (forwarded) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("server {} is not in the CMS master pool (it sees pool {} as master, epoch {}); "
                                 "retry in a moment",
                                 options_.server_id, snapshot.master_pool(), snapshot.document->master_epoch));
  }

  return PublishThroughMaster(snapshot, "/cms/publish", json{{"file", file_name}, {"toml", toml}});
}

Result<int64_t> CmsAgent::PublishThroughMaster(const CmsReplica::Snapshot& snapshot, std::string_view path,
                                               const json& body) {
  const PoolSpec* master = snapshot.topology->FindPool(snapshot.master_pool());
  std::string last_error = "it has no servers";
  for (const ServerSpec& server : master ? master->servers : std::vector<ServerSpec>{}) {
    auto response = HttpCall("POST", AdminUrlOf(server, fmt::format("{}?forwarded=1", path)), body.dump(),
                             {.token = options_.admin_token, .timeout = std::chrono::seconds(10)});
    if (!response) {
      last_error = response.error().message;
      continue;
    }
    auto answer = json::parse(response->body, nullptr, false);
    if (response->status == 200 && answer.is_object() && answer.contains("version")) {
      return answer["version"].get<int64_t>();
    }
    std::string reason = answer.is_object() && answer.contains("error") ? answer["error"].get<std::string>()
                                                                       : fmt::format("HTTP {}", response->status);
    ErrorCode code = response->status == 422   ? ErrorCode::kInvalidArgument
                     : response->status == 409 ? ErrorCode::kFailedPrecondition
                     : response->status == 404 ? ErrorCode::kNotFound
                                               : ErrorCode::kUnavailable;
    return MakeError(code, reason);
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("the CMS master pool {} is unreachable ({}); nothing was published. Bring it back or "
                               "fail the CMS over to its standby with `tandem cms failover --force`",
                               snapshot.master_pool(), last_error));
}

Result<int64_t> CmsAgent::PublishRouting(const RoutingUpdate& update, bool forwarded) {
  auto snapshot = replica_.Current();
  if (IsMasterPool(snapshot)) return PublishLocally("", "", &update);
  if (forwarded) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("server {} is not in the CMS master pool (it sees pool {} as master); retry in a "
                                 "moment",
                                 options_.server_id, snapshot.master_pool()));
  }
  auto body = json::parse(update.ToJson());
  return PublishThroughMaster(snapshot, "/cms/routing", body);
}

Result<int64_t> CmsAgent::PublishLocally(const std::string& toml, const std::string& file_name,
                                         const RoutingUpdate* routing_update) {
  std::lock_guard lock(publish_mu_);
  auto read_only = store_.GetSetting(kCmsReadOnlySetting);
  if (!read_only) return std::unexpected(read_only.error());
  auto snapshot = replica_.Current();
  if (read_only->has_value() && !(*read_only)->empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("the CMS master pool {} is read-only: a CMS failover to pool {} is in progress or was "
                                 "done; nothing was published. Publish through pool {} (any server forwards there "
                                 "once the failover completes)",
                                 snapshot.master_pool(), **read_only, **read_only));
  }
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  int64_t previous = latest->has_value() ? (*latest)->version : 0;
  // A new version carries the master of the epoch it is published in, and the DR
  // routing state of the newest stored version (the replica may not have it yet).
  const CmsDocument& current = *snapshot.document;
  CmsDocument document{previous + 1, NowUnixMillis(), file_name, toml,
                       current.master_pool, current.master_epoch, current.epoch_start_version};
  if (latest->has_value()) {
    auto stored = CmsDocument::FromJson((*latest)->document);
    if (!stored) return std::unexpected(stored.error());
    document.routing = stored->routing;
    document.routing_epoch = stored->routing_epoch;
    if (routing_update != nullptr) {  // the same topology again, with the routing changed
      document.topology_file = stored->topology_file;
      document.topology_toml = stored->topology_toml;
    }
  }
  if (routing_update != nullptr) {
    auto topology = CmsReplica::ParseDocumentTopology(document);
    if (!topology) return std::unexpected(topology.error());
    // Checked against the newest stored version under the publish lock: of two
    // admins racing, one wins and the other is refused by the rules.
    if (auto allowed = CheckRoutingUpdate(document, **topology, *routing_update); !allowed) {
      return std::unexpected(allowed.error());
    }
    ApplyRoutingUpdate(document, **topology, *routing_update);
  }
  // A concurrent publish from another server of the pool makes this one fail with
  // kAlreadyExists rather than overwrite: the admin retries against the new version.
  if (auto appended = store_.AppendCmsVersion({document.version, document.published_at_ms, document.ToJson()}, previous);
      !appended) {
    return std::unexpected(appended.error());
  }
  spdlog::info("CMS: published version {} from {} (routing epoch {})", document.version, document.topology_file,
               document.routing_epoch);
  auto topology = CmsReplica::ParseDocumentTopology(document);
  if (auto synced = SyncFromStore(); !synced) spdlog::warn("CMS: {}", synced.error().message);
  if (topology) PushToAllServers(**topology, document.ToJson());
  return document.version;
}

json CmsAgent::PushToAllServers(const Topology& topology, const std::string& document_json) {
  std::vector<std::pair<const ServerSpec*, std::future<Result<HttpResponse>>>> pushes;
  auto started = std::chrono::steady_clock::now();
  for (const PoolSpec& pool : topology.pools) {
    for (const ServerSpec& server : pool.servers) {
      if (server.id == options_.server_id) continue;
      // The document travels with the push, so a server installs it even when it
      // would pull from a pool that is gone.
      pushes.emplace_back(&server, std::async(std::launch::async, [this, &document_json,
                                                                   url = AdminUrlOf(server, "/cms/notify")] {
                            return HttpCall("POST", url, document_json,
                                            {.token = options_.admin_token, .timeout = options_.peer_timeout});
                          }));
    }
  }
  json results = json::array();
  for (auto& [server, push] : pushes) {
    // Best effort: a server that misses the push picks the version up at its next poll.
    auto response = push.get();
    json entry{{"server", server->id}, {"ok", response && response->status / 100 == 2}};
    if (!response) entry["error"] = response.error().message;
    else if (response->status / 100 != 2) entry["error"] = fmt::format("HTTP {}: {}", response->status, response->body);
    results.push_back(entry);
  }
  spdlog::info("CMS: pushed the version to {} servers in {:.0f} ms", results.size(), MillisSince(started));
  return results;
}

json CmsAgent::StatusJson() const {
  auto snapshot = replica_.Current();
  json status{{"version", snapshot.document->version},
              {"published_at_ms", snapshot.document->published_at_ms},
              {"master_pool", snapshot.master_pool()},
              {"master_epoch", snapshot.document->master_epoch},
              {"routing_epoch", snapshot.document->routing_epoch},
              {"is_master_pool", IsMasterPool(snapshot)}};
  // Kept in this pool's store: shown by every server of the pool.
  auto read_only = store_.GetSetting(kCmsReadOnlySetting);
  if (read_only && read_only->has_value() && !(*read_only)->empty()) status["read_only_for_failover_to"] = **read_only;
  auto divergent = store_.GetSetting(kCmsDivergentSetting);
  if (divergent && divergent->has_value()) {
    json entries = json::parse(**divergent, nullptr, false);
    if (entries.is_array()) {
      for (json& entry : entries) entry.erase("document");  // the full text stays in the store
      status["divergent_versions"] = entries;
    }
  }
  std::lock_guard lock(status_mu_);
  status["master_reachable"] = master_reachable_;
  status["last_sync_error"] = last_sync_error_;
  if (last_sync_ok_ != std::chrono::steady_clock::time_point{}) {
    status["seconds_since_sync"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_sync_ok_).count();
  }
  return status;
}

json CmsAgent::ClusterStatusJson() {
  auto snapshot = replica_.Current();
  const PoolSpec* master = snapshot.topology->FindPool(snapshot.master_pool());
  Result<Head> master_head = MakeError(ErrorCode::kFailedPrecondition, "the CMS master pool is not in the topology");
  if (master != nullptr) master_head = PoolHead(*master);
  json servers = json::array();
  json divergent = json::array();
  std::vector<std::pair<const ServerSpec*, std::future<Result<HttpResponse>>>> calls;
  for (const PoolSpec& pool : snapshot.topology->pools) {
    for (const ServerSpec& server : pool.servers) {
      calls.emplace_back(&server, std::async(std::launch::async, [this, url = AdminUrlOf(server, "/status")] {
                           return HttpCall("GET", url, "", {.token = options_.admin_token, .timeout = options_.peer_timeout});
                         }));
    }
  }
  std::set<std::string> pools_with_divergence;
  for (auto& [server, call] : calls) {
    const PoolSpec* pool = nullptr;
    snapshot.topology->FindServer(server->id, &pool);
    json entry{{"id", server->id}, {"pool", pool->fqdn}, {"reachable", false}, {"replica_version", nullptr},
               {"replica_epoch", nullptr}, {"sees_master", nullptr}, {"up_to_date", nullptr}};
    auto response = call.get();
    if (response && response->status == 200) {
      auto body = json::parse(response->body, nullptr, false);
      if (body.is_object() && body.contains("cms") && body["cms"].contains("version")) {
        const json& cms = body["cms"];
        int64_t version = cms["version"].get<int64_t>();
        int64_t epoch = cms.value("master_epoch", int64_t{1});
        entry["reachable"] = true;
        entry["replica_version"] = version;
        entry["replica_epoch"] = epoch;
        entry["sees_master"] = cms.value("master_pool", std::string());
        if (master_head) {
          entry["up_to_date"] = std::tie(epoch, version) >= std::tie(master_head->master_epoch, master_head->version);
        }
        if (cms.contains("divergent_versions") && pools_with_divergence.insert(pool->fqdn).second) {
          divergent.push_back({{"pool", pool->fqdn}, {"versions", cms["divergent_versions"]}});
        }
        if (cms.contains("read_only_for_failover_to")) entry["read_only_for_failover_to"] = cms["read_only_for_failover_to"];
      }
    }
    servers.push_back(entry);
  }
  const PoolSpec* standby = snapshot.topology->BackupPoolOf(snapshot.master_pool());
  json status{{"master_pool", snapshot.master_pool()},
              {"master_epoch", snapshot.document->master_epoch},
              {"standby_pool", standby ? json(standby->fqdn) : json(nullptr)},
              {"master_reachable", master_head.has_value()},
              {"master_version", master_head ? json(master_head->version) : json(nullptr)},
              {"answered_by", options_.server_id},
              {"servers", servers},
              {"divergent", divergent}};
  if (!master_head) status["master_error"] = master_head.error().message;
  return status;
}

std::optional<HttpResponse> CmsAgent::ForwardIfOtherPool(const HttpRequest& request) {
  auto snapshot = replica_.Current();
  std::string pool = Param(request, "pool");
  if (pool.empty() || pool == LocalPool(snapshot)) return std::nullopt;
  const PoolSpec* target = snapshot.topology->FindPool(pool);
  if (target == nullptr) return HttpResponse::Error(404, fmt::format("pool {} is not in the topology", pool));
  auto answer = ForwardToPool(*target, request, {.token = options_.admin_token, .timeout = std::chrono::seconds(30)});
  return answer ? *answer : HttpResponse::Error(503, answer.error().message);
}

HttpResponse CmsAgent::FailoverPlan(const HttpRequest& request) {
  bool force = Param(request, "force") == "1";
  auto snapshot = replica_.Current();
  const std::string& master = snapshot.master_pool();
  const PoolSpec* master_spec = snapshot.topology->FindPool(master);
  const PoolSpec* standby = snapshot.topology->BackupPoolOf(master);
  if (master_spec == nullptr || standby == nullptr) {
    return HttpResponse::Error(409, fmt::format("the CMS master pool {} has no backup pool to fail over to: set its "
                                                "backup_pool in the topology and publish it; nothing was changed",
                                                master));
  }
  auto master_head = std::async(std::launch::async, [&] { return PoolHead(*master_spec); });
  auto standby_head = PoolHead(*standby);
  auto master_result = master_head.get();
  if (!standby_head) {
    return HttpResponse::Error(503, fmt::format("the standby pool {} is unreachable ({}): nothing can be promoted; "
                                                "nothing was changed",
                                                standby->fqdn, standby_head.error().message));
  }
  if (!force && !master_result) {
    return HttpResponse::Error(409, fmt::format("the CMS master pool {} is unreachable ({}): a planned failover needs "
                                                "it; run `tandem cms failover --force` to promote {} with what it "
                                                "has; nothing was changed",
                                                master, master_result.error().message, standby->fqdn));
  }
  if (force && master_result) {
    // Two masters would both accept versions: a reachable master fails over without
    // loss by the planned path.
    return HttpResponse::Error(409, fmt::format("the CMS master pool {} is reachable: run `tandem cms failover` "
                                                "without --force (it loses nothing); nothing was changed",
                                                master));
  }
  json plan{{"master_pool", master},
            {"standby_pool", standby->fqdn},
            {"master_epoch", snapshot.document->master_epoch},
            {"master_head", master_result ? master_result->ToJson() : json(nullptr)},
            {"standby_head", standby_head->ToJson()}};
  return HttpResponse::Json(200, plan.dump());
}

HttpResponse CmsAgent::SetReadOnly(const HttpRequest& request) {
  if (auto forwarded = ForwardIfOtherPool(request)) return *forwarded;
  auto snapshot = replica_.Current();
  if (!IsMasterPool(snapshot)) {
    return HttpResponse::Error(409, fmt::format("pool {} is not the CMS master (pool {} is, epoch {})",
                                                LocalPool(snapshot), snapshot.master_pool(),
                                                snapshot.document->master_epoch));
  }
  std::string action = Param(request, "action");
  std::string standby = Param(request, "standby");
  if (action != "set" && action != "clear") return HttpResponse::Error(400, "action must be set or clear");
  if (action == "set" && standby.empty()) return HttpResponse::Error(400, "name the standby with standby=FQDN");
  // Under the publish lock: a publish of this server either finished before (and is
  // in the head below) or sees the flag.
  std::lock_guard lock(publish_mu_);
  if (auto set = store_.SetSetting(kCmsReadOnlySetting, action == "set" ? standby : ""); !set) {
    return HttpResponse::Error(503, set.error().message);
  }
  auto head = StoreHead();
  if (!head) return HttpResponse::Error(503, head.error().message);
  spdlog::warn("CMS: pool {} is {} for publishing{}", LocalPool(snapshot), action == "set" ? "read-only" : "writable",
               action == "set" ? fmt::format(" (CMS failover to {})", standby) : " again");
  return HttpResponse::Json(200, json{{"pool", LocalPool(snapshot)},
                                      {"read_only", action == "set"},
                                      {"head", head->has_value() ? (*head)->ToJson() : json(nullptr)}}
                                     .dump());
}

HttpResponse CmsAgent::Promote(const HttpRequest& request) {
  if (auto forwarded = ForwardIfOtherPool(request)) return *forwarded;
  auto started = std::chrono::steady_clock::now();
  auto snapshot = replica_.Current();
  std::string local = LocalPool(snapshot);
  const std::string master = snapshot.master_pool();
  std::string mode = Param(request, "mode");
  if (mode != "planned" && mode != "forced") return HttpResponse::Error(400, "mode must be planned or forced");
  if (master == local) {
    return HttpResponse::Error(409, fmt::format("pool {} already is the CMS master (epoch {}); nothing was changed",
                                                local, snapshot.document->master_epoch));
  }
  const PoolSpec* standby = snapshot.topology->BackupPoolOf(master);
  if (standby == nullptr || standby->fqdn != local) {
    return HttpResponse::Error(409, fmt::format("pool {} is not the standby of the CMS master pool {}; nothing was "
                                                "changed",
                                                local, master));
  }
  if (mode == "forced") {
    const PoolSpec* master_spec = snapshot.topology->FindPool(master);
    if (master_spec != nullptr && PoolHead(*master_spec)) {
      return HttpResponse::Error(409, fmt::format("the CMS master pool {} is reachable: run `tandem cms failover` "
                                                  "without --force; nothing was changed",
                                                  master));
    }
  }
  std::lock_guard lock(publish_mu_);
  auto latest = store_.LatestCmsVersion();
  if (!latest) return HttpResponse::Error(503, latest.error().message);
  if (!latest->has_value()) {
    return HttpResponse::Error(409, fmt::format("the standby pool {} holds no CMS version: the Backup Service never "
                                                "shipped one; nothing was changed",
                                                local));
  }
  auto parsed = CmsDocument::FromJson((*latest)->document);
  if (!parsed) return HttpResponse::Error(500, parsed.error().message);
  auto base_snapshot = CmsReplica::MakeSnapshot(std::move(*parsed));
  if (!base_snapshot) return HttpResponse::Error(500, base_snapshot.error().message);
  const CmsDocument& base = *base_snapshot->document;
  if (mode == "planned") {
    int64_t expect_version = IntParam(request, "expect_version", -1);
    int64_t expect_epoch = IntParam(request, "expect_epoch", -1);
    if (base.version != expect_version || base.master_epoch != expect_epoch) {
      return HttpResponse::Error(
          409, fmt::format("the standby pool {} holds CMS version {} (epoch {}), not the master's head {} (epoch {}): "
                           "the final sync is incomplete; nothing was promoted",
                           local, base.version, base.master_epoch, expect_version, expect_epoch));
    }
  }
  CmsDocument promoted = base;
  promoted.version = base.version + 1;
  promoted.published_at_ms = NowUnixMillis();
  promoted.master_pool = local;
  promoted.master_epoch = std::max(base.master_epoch, snapshot.document->master_epoch) + 1;
  promoted.epoch_start_version = promoted.version;
  std::string promoted_json = promoted.ToJson();
  if (auto appended = store_.AppendCmsVersion({promoted.version, promoted.published_at_ms, promoted_json}, base.version);
      !appended) {
    return HttpResponse::Error(HttpStatusFor(appended.error()), appended.error().message);
  }
  // This pool may have been made read-only by an earlier failover away from it.
  if (auto cleared = store_.SetSetting(kCmsReadOnlySetting, ""); !cleared) {
    spdlog::error("CMS: {}", cleared.error().message);
  }
  double promote_ms = MillisSince(started);
  spdlog::warn("CMS: pool {} promoted to CMS master ({} failover): version {} epoch {}, from version {} epoch {} "
               "published at {} ms",
               local, mode, promoted.version, promoted.master_epoch, base.version, base.master_epoch,
               base.published_at_ms);
  if (auto installed = InstallNewer(promoted, "the promotion"); !installed) {
    spdlog::error("CMS: cannot install the promoted version: {}", installed.error().message);
  }
  auto push_started = std::chrono::steady_clock::now();
  json pushed = PushToAllServers(*replica_.Current().topology, promoted_json);
  json answer{{"promoted", {{"version", promoted.version},
                            {"master_epoch", promoted.master_epoch},
                            {"master_pool", promoted.master_pool},
                            {"published_at_ms", promoted.published_at_ms}}},
              {"from", {{"version", base.version},
                        {"master_epoch", base.master_epoch},
                        {"master_pool", master},
                        {"published_at_ms", base.published_at_ms}}},
              {"promote_ms", promote_ms},
              {"push_ms", MillisSince(push_started)},
              {"pushed", pushed}};
  return HttpResponse::Json(200, answer.dump());
}

void CmsAgent::RegisterRoutes(HttpServer& http) {
  http.Route("GET", "/cms/document", [this](const HttpRequest& request) {
    auto snapshot = replica_.Current();
    int64_t have = IntParam(request, "have", -1);
    int64_t epoch = IntParam(request, "epoch", 1);  // agents before CMS failover send no epoch
    if (have >= 0 && !snapshot.document->IsNewerThan(epoch, have)) return HttpResponse::Json(204, "");
    return HttpResponse::Json(200, snapshot.document->ToJson());
  });
  // This pool's store head: the master's newest version, or what a standby holds.
  http.Route("GET", "/cms/head", [this](const HttpRequest& request) {
    if (auto forwarded = ForwardIfOtherPool(request)) return *forwarded;
    auto head = StoreHead();
    if (!head) return HttpResponse::Error(503, head.error().message);
    if (!head->has_value()) return HttpResponse::Error(404, "this pool's store holds no CMS version");
    json body = (*head)->ToJson();
    body["is_master_pool"] = IsMasterPool(replica_.Current());
    return HttpResponse::Json(200, body.dump());
  });
  http.Route("POST", "/cms/publish", [this](const HttpRequest& request) {
    auto body = json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("toml") || !body["toml"].is_string()) {
      return HttpResponse::Error(400, "body must be a JSON object with a string field 'toml'");
    }
    std::string file = body.contains("file") && body["file"].is_string() ? body["file"].get<std::string>() : "topology";
    auto version = Publish(body["toml"].get<std::string>(), file, Param(request, "forwarded") == "1");
    if (!version) return HttpResponse::Error(HttpStatusFor(version.error()), version.error().message);
    return HttpResponse::Json(200, json{{"version", *version}}.dump());
  });
  // A DR routing change (pool failover/failback), published by the master.
  http.Route("POST", "/cms/routing", [this](const HttpRequest& request) {
    auto update = RoutingUpdate::FromJson(request.body);
    if (!update) return HttpResponse::Error(400, update.error().message);
    auto version = PublishRouting(*update, Param(request, "forwarded") == "1");
    if (!version) return HttpResponse::Error(HttpStatusFor(version.error()), version.error().message);
    return HttpResponse::Json(200, json{{"version", *version}}.dump());
  });
  http.Route("POST", "/cms/notify", [this](const HttpRequest& request) {
    if (!request.body.empty()) {
      auto document = CmsDocument::FromJson(request.body);
      if (!document) return HttpResponse::Error(400, document.error().message);
      auto installed = InstallNewer(std::move(*document), fmt::format("a push from {}", request.remote_address));
      if (!installed) return HttpResponse::Error(HttpStatusFor(installed.error()), installed.error().message);
    }
    WakeUp();
    return HttpResponse::Json(204, "");
  });
  http.Route("GET", "/cms/status", [this](const HttpRequest&) { return HttpResponse::Json(200, ClusterStatusJson().dump()); });
  http.Route("GET", "/cms/failover/plan", [this](const HttpRequest& r) { return FailoverPlan(r); });
  http.Route("POST", "/cms/failover/readonly", [this](const HttpRequest& r) { return SetReadOnly(r); });
  http.Route("POST", "/cms/failover/promote", [this](const HttpRequest& r) { return Promote(r); });
}

}  // namespace tandem
