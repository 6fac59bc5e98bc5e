#include "cms/cms_agent.h"

#include <future>

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

}  // namespace

CmsAgent::CmsAgent(CmsAgentOptions options, CmsReplica& replica, Store& pool_store, MetricsRegistry& metrics)
    : options_(std::move(options)),
      replica_(replica),
      store_(pool_store),
      sync_failures_(metrics.GetCounter("tandem_cms_sync_failures_total", "CMS replica syncs that failed")),
      replica_version_(metrics.GetGauge("tandem_cms_replica_version", "CMS version held by this server's replica")) {
  replica_version_->Set(static_cast<double>(replica_.Current().document->version));
}

CmsAgent::~CmsAgent() { Stop(); }

bool CmsAgent::IsMasterPool(const CmsReplica::Snapshot& snapshot) const {
  const PoolSpec* pool = nullptr;
  return snapshot.topology->FindServer(options_.server_id, &pool) != nullptr &&
         pool->fqdn == snapshot.topology->cms_master_pool;
}

Status CmsAgent::BootstrapIfEmpty() {
  auto snapshot = replica_.Current();
  if (!IsMasterPool(snapshot)) return OkStatus();
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  if (latest->has_value()) return SyncFromStore();
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
  Status status = IsMasterPool(snapshot) ? SyncFromStore() : SyncFromMaster(snapshot);
  RecordSync(status);
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

Status CmsAgent::SyncFromStore() {
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  if (!latest->has_value()) return OkStatus();
  auto document = CmsDocument::FromJson((*latest)->document);
  if (!document) return std::unexpected(document.error());
  auto installed = replica_.Install(std::move(*document));
  if (!installed) return std::unexpected(installed.error());
  if (*installed) {
    replica_version_->Set(static_cast<double>(replica_.Current().document->version));
    spdlog::info("CMS: replica now at version {}", replica_.Current().document->version);
  }
  return OkStatus();
}

Status CmsAgent::SyncFromMaster(const CmsReplica::Snapshot& snapshot) {
  const PoolSpec* master = snapshot.topology->FindPool(snapshot.topology->cms_master_pool);
  if (master == nullptr) return MakeError(ErrorCode::kFailedPrecondition, "the topology names no CMS master pool");
  std::string last_error = "no server in the CMS master pool";
  for (const ServerSpec& server : master->servers) {
    auto response = HttpCall(
        "GET", AdminUrlOf(server, fmt::format("/cms/document?have={}", snapshot.document->version)), "",
        {.token = options_.admin_token, .timeout = options_.peer_timeout});
    if (!response) {
      last_error = response.error().message;
      continue;
    }
    if (response->status == 204) return OkStatus();  // nothing newer
    if (response->status != 200) {
      last_error = fmt::format("{} answered HTTP {}", server.id, response->status);
      continue;
    }
    auto document = CmsDocument::FromJson(response->body);
    if (!document) return std::unexpected(document.error());
    auto installed = replica_.Install(std::move(*document));
    if (!installed) return std::unexpected(installed.error());
    if (*installed) {
      replica_version_->Set(static_cast<double>(replica_.Current().document->version));
      spdlog::info("CMS: replica now at version {} (from {})", replica_.Current().document->version, server.id);
    }
    return OkStatus();
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("CMS master pool {} is unreachable: {}", master->fqdn, last_error));
}

Result<int64_t> CmsAgent::MasterVersion(const CmsReplica::Snapshot& snapshot) {
  if (IsMasterPool(snapshot)) {
    auto latest = store_.LatestCmsVersion();
    if (!latest) return std::unexpected(latest.error());
    return latest->has_value() ? (*latest)->version : 0;
  }
  const PoolSpec* master = snapshot.topology->FindPool(snapshot.topology->cms_master_pool);
  if (master == nullptr) return MakeError(ErrorCode::kFailedPrecondition, "the topology names no CMS master pool");
  for (const ServerSpec& server : master->servers) {
    auto response = HttpCall("GET", AdminUrlOf(server, "/cms/head"), "",
                             {.token = options_.admin_token, .timeout = options_.peer_timeout});
    if (!response || response->status != 200) continue;
    auto body = json::parse(response->body, nullptr, false);
    if (body.is_object() && body.contains("version") && body["version"].is_number_integer()) {
      return body["version"].get<int64_t>();
    }
  }
  return MakeError(ErrorCode::kUnavailable, fmt::format("CMS master pool {} is unreachable", master->fqdn));
}

Result<int64_t> CmsAgent::Publish(const std::string& toml, const std::string& file_name) {
  TopologyParseResult parsed = ParseTopology(toml, file_name);
  if (parsed.HasErrors()) {
    std::string message = "the topology is invalid; nothing was published:";
    for (const Diagnostic& diagnostic : parsed.diagnostics) message += "\n" + diagnostic.ToString();
    return MakeError(ErrorCode::kInvalidArgument, message);
  }
  auto snapshot = replica_.Current();
  if (IsMasterPool(snapshot)) return PublishLocally(toml, file_name);

  const PoolSpec* master = snapshot.topology->FindPool(snapshot.topology->cms_master_pool);
  std::string last_error = "it has no servers";
  json body{{"file", file_name}, {"toml", toml}};
  for (const ServerSpec& server : master ? master->servers : std::vector<ServerSpec>{}) {
    auto response = HttpCall("POST", AdminUrlOf(server, "/cms/publish"), body.dump(),
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
    return MakeError(response->status == 422 ? ErrorCode::kInvalidArgument : ErrorCode::kUnavailable, reason);
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("the CMS master pool {} is unreachable ({}); nothing was published. Bring it back or "
                               "fail the CMS over to its standby",
                               snapshot.topology->cms_master_pool, last_error));
}

Result<int64_t> CmsAgent::PublishLocally(const std::string& toml, const std::string& file_name) {
  std::lock_guard lock(publish_mu_);
  auto latest = store_.LatestCmsVersion();
  if (!latest) return std::unexpected(latest.error());
  int64_t previous = latest->has_value() ? (*latest)->version : 0;
  CmsDocument document{previous + 1, NowUnixMillis(), file_name, toml};
  // A concurrent publish from another server of the pool makes this one fail with
  // kAlreadyExists rather than overwrite: the admin retries against the new version.
  if (auto appended = store_.AppendCmsVersion({document.version, document.published_at_ms, document.ToJson()}, previous);
      !appended) {
    return std::unexpected(appended.error());
  }
  spdlog::info("CMS: published version {} from {}", document.version, file_name);
  auto topology = CmsReplica::ParseDocumentTopology(document);
  if (auto synced = SyncFromStore(); !synced) spdlog::warn("CMS: {}", synced.error().message);
  if (topology) PushToAllServers(**topology);
  return document.version;
}

void CmsAgent::PushToAllServers(const Topology& topology) {
  std::vector<std::future<void>> pushes;
  for (const PoolSpec& pool : topology.pools) {
    for (const ServerSpec& server : pool.servers) {
      if (server.id == options_.server_id) continue;
      pushes.push_back(std::async(std::launch::async, [this, url = AdminUrlOf(server, "/cms/notify")] {
        // Best effort: a server that misses the push picks the version up at its next poll.
        (void)HttpCall("POST", url, "", {.token = options_.admin_token, .timeout = options_.peer_timeout});
      }));
    }
  }
  for (auto& push : pushes) push.wait();
}

json CmsAgent::StatusJson() const {
  auto snapshot = replica_.Current();
  std::lock_guard lock(status_mu_);
  json status{{"version", snapshot.document->version},
              {"published_at_ms", snapshot.document->published_at_ms},
              {"master_pool", snapshot.topology->cms_master_pool},
              {"is_master_pool", IsMasterPool(snapshot)},
              {"master_reachable", master_reachable_},
              {"last_sync_error", last_sync_error_}};
  if (last_sync_ok_ != std::chrono::steady_clock::time_point{}) {
    status["seconds_since_sync"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_sync_ok_).count();
  }
  return status;
}

json CmsAgent::ClusterStatusJson() {
  auto snapshot = replica_.Current();
  auto master_version = MasterVersion(snapshot);
  json servers = json::array();
  std::vector<std::pair<const ServerSpec*, std::future<Result<HttpResponse>>>> calls;
  for (const PoolSpec& pool : snapshot.topology->pools) {
    for (const ServerSpec& server : pool.servers) {
      calls.emplace_back(&server, std::async(std::launch::async, [this, url = AdminUrlOf(server, "/status")] {
                           return HttpCall("GET", url, "", {.token = options_.admin_token, .timeout = options_.peer_timeout});
                         }));
    }
  }
  for (auto& [server, call] : calls) {
    const PoolSpec* pool = nullptr;
    snapshot.topology->FindServer(server->id, &pool);
    json entry{{"id", server->id}, {"pool", pool->fqdn}, {"reachable", false}, {"replica_version", nullptr},
               {"up_to_date", nullptr}};
    auto response = call.get();
    if (response && response->status == 200) {
      auto body = json::parse(response->body, nullptr, false);
      if (body.is_object() && body.contains("cms") && body["cms"].contains("version")) {
        entry["reachable"] = true;
        entry["replica_version"] = body["cms"]["version"];
        if (master_version) entry["up_to_date"] = body["cms"]["version"].get<int64_t>() >= *master_version;
      }
    }
    servers.push_back(entry);
  }
  json status{{"master_pool", snapshot.topology->cms_master_pool},
              {"master_reachable", master_version.has_value()},
              {"master_version", master_version ? json(*master_version) : json(nullptr)},
              {"answered_by", options_.server_id},
              {"servers", servers}};
  if (!master_version) status["master_error"] = master_version.error().message;
  return status;
}

void CmsAgent::RegisterRoutes(HttpServer& http) {
  http.Route("GET", "/cms/document", [this](const HttpRequest& request) {
    auto snapshot = replica_.Current();
    auto have = request.query.find("have");
    if (have != request.query.end()) {
      char* end = nullptr;
      long long known = std::strtoll(have->second.c_str(), &end, 10);
      if (end != have->second.c_str() && *end == '\0' && known >= snapshot.document->version) {
        return HttpResponse::Json(204, "");
      }
    }
    return HttpResponse::Json(200, snapshot.document->ToJson());
  });
  http.Route("GET", "/cms/head", [this](const HttpRequest&) {
    auto snapshot = replica_.Current();
    if (!IsMasterPool(snapshot)) return HttpResponse::Error(409, "this server is not in the CMS master pool");
    auto version = MasterVersion(snapshot);
    if (!version) return HttpResponse::Error(503, version.error().message);
    return HttpResponse::Json(200, json{{"version", *version}}.dump());
  });
  http.Route("POST", "/cms/publish", [this](const HttpRequest& request) {
    auto body = json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("toml") || !body["toml"].is_string()) {
      return HttpResponse::Error(400, "body must be a JSON object with a string field 'toml'");
    }
    std::string file = body.contains("file") && body["file"].is_string() ? body["file"].get<std::string>() : "topology";
    auto version = Publish(body["toml"].get<std::string>(), file);
    if (!version) return HttpResponse::Error(HttpStatusFor(version.error()), version.error().message);
    return HttpResponse::Json(200, json{{"version", *version}}.dump());
  });
  http.Route("POST", "/cms/notify", [this](const HttpRequest&) {
    WakeUp();
    return HttpResponse::Json(204, "");
  });
  http.Route("GET", "/cms/status", [this](const HttpRequest&) { return HttpResponse::Json(200, ClusterStatusJson().dump()); });
}

}  // namespace tandem
