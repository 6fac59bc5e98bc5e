#include "backup/backup_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/http_client.h"
#include "admin/peer_client.h"
#include "backup/backup_link.h"
#include "backup/backup_status.h"
#include "backup/backup_verifier.h"
#include "common/clock.h"

namespace tandem {
namespace {

std::string Param(const HttpRequest& request, const char* name, std::string fallback = "") {
  auto it = request.query.find(name);
  return it == request.query.end() ? fallback : it->second;
}

// The modules a request names: one, or every module of `available` for "all".
std::expected<std::vector<std::string>, HttpResponse> RequestedModules(const HttpRequest& request,
                                                                       const std::vector<std::string>& available,
                                                                       const Pairing& pairing) {
  std::string module = Param(request, "module", "all");
  if (module == "all") return available;
  if (!IsBackupModule(module)) {
    return std::unexpected(HttpResponse::Error(400, fmt::format("unknown module '{}': use user, conference, cms or all",
                                                                module)));
  }
  if (std::find(available.begin(), available.end(), module) == available.end()) {
    return std::unexpected(HttpResponse::Error(
        409, fmt::format("pool {} does not ship '{}' to {}: only the CMS master pool ships the CMS", pairing.local->fqdn,
                         module, pairing.partner->fqdn)));
  }
  return std::vector<std::string>{module};
}

}  // namespace

BackupService::BackupService(BackupServiceOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics)
    : options_(std::move(options)),
      store_(store),
      replica_(replica),
      link_(options_.shipper.pool, options_.shipper.data_dir, store, replica, metrics),
      shipper_(options_.shipper, store, replica, metrics) {}

BackupService::~BackupService() { Stop(); }

void BackupService::Start() { shipper_.Start(); }
void BackupService::Stop() { shipper_.Stop(); }

void BackupService::RegisterRoutes(HttpServer& http) {
  link_.RegisterRoutes(http);
  http.Route("GET", "/backup/status", [this](const HttpRequest& r) { return Status(r); });
  http.Route("POST", "/backup/sync", [this](const HttpRequest& r) { return Sync(r); });
  http.Route("POST", "/backup/service", [this](const HttpRequest& r) { return Service(r); });
  http.Route("POST", "/backup/verify", [this](const HttpRequest& r) { return Verify(r); });
  http.Route("POST", "/backup/set-aside", [this](const HttpRequest& r) { return SetAside(r); });
  http.Route("POST", "/backup/resend", [this](const HttpRequest& r) { return Resend(r); });
  http.Route("GET", "/backup/divergent", [this](const HttpRequest& r) { return Divergent(r); });
  constexpr auto kSigned = HttpServer::Access::kPublic;  // authenticated by the pairing signature instead
  http.Route("GET", "/backup/view", [this](const HttpRequest& r) { return View(r); }, kSigned);
  http.Route("POST", "/backup/verify_source", [this](const HttpRequest& r) { return VerifySource(r); }, kSigned);
}

Result<std::string> BackupService::SecretFor(const Pairing& pairing) const {
  return LoadOrCreatePairingSecret(options_.shipper.data_dir, pairing.local->fqdn, pairing.partner->fqdn);
}

std::expected<Pairing, HttpResponse> BackupService::LocalPairingFor(const HttpRequest& request) {
  auto snapshot = replica_.Current();
  std::string pool = Param(request, "pool", options_.shipper.pool);
  if (pool != options_.shipper.pool) {
    const PoolSpec* target = snapshot.topology->FindPool(pool);
    if (target == nullptr) {
      return std::unexpected(HttpResponse::Error(404, fmt::format("pool {} is not in the published topology", pool)));
    }
    std::string target_path = request.path;
    char separator = '?';
    for (const auto& [name, value] : request.query) {
      target_path += fmt::format("{}{}={}", separator, UrlEncode(name), UrlEncode(value));
      separator = '&';
    }
    auto answer = CallAnyServerOf(*target, request.method, target_path, request.body,
                                  HttpCallOptions{.token = options_.admin_token, .timeout = std::chrono::minutes(5)});
    return std::unexpected(answer ? *answer : HttpResponse::Error(503, answer.error().message));
  }
  auto pairing = PairingOf(snapshot.topology, pool, *snapshot.document);
  if (!pairing) {
    return std::unexpected(HttpResponse::Error(pairing.error().code == ErrorCode::kNotFound ? 404 : 409,
                                               pairing.error().message));
  }
  return *pairing;
}

HttpResponse BackupService::Status(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  int64_t now = NowUnixMillis();
  auto interval = replica_.Current().topology->backup_sync_interval;
  auto local = LocalBackupView(store_, *pairing, interval, now);
  if (!local) return HttpResponse::Error(503, local.error().message);
  auto secret = SecretFor(*pairing);
  if (!secret) return HttpResponse::Error(503, secret.error().message);
  auto remote = CallPartner(*pairing, *secret, "GET", "/backup/view", {}, "", options_.peer_timeout);
  return HttpResponse::Json(200, CombineBackupViews(*pairing, *local, remote, now).dump());
}

std::expected<std::pair<LinkSender, Pairing>, HttpResponse> BackupService::AuthenticatedPairing(
    const HttpRequest& request) {
  BatchParams params(request.query.begin(), request.query.end());
  auto sender = link_.Authenticate(request, params, /*module_required=*/false);
  if (!sender) return std::unexpected(sender.error());
  auto cms = replica_.Current();
  auto pairing = PairingOf(cms.topology, options_.shipper.pool, *cms.document);
  if (!pairing) return std::unexpected(HttpResponse::Error(409, pairing.error().message));
  return std::pair{std::move(*sender), std::move(*pairing)};
}

HttpResponse BackupService::View(const HttpRequest& request) {
  auto linked = AuthenticatedPairing(request);
  if (!linked) return linked.error();
  const Pairing& pairing = linked->second;
  auto view = LocalBackupView(store_, pairing, pairing.topology->backup_sync_interval, NowUnixMillis());
  if (!view) return HttpResponse::Error(503, view.error().message);
  return HttpResponse::Json(200, view->dump());
}

HttpResponse BackupService::Sync(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  auto modules = RequestedModules(request, pairing->export_modules, *pairing);
  if (!modules) return modules.error();
  auto stopped = store_.GetSetting(kBackupStoppedSetting);
  if (!stopped) return HttpResponse::Error(503, stopped.error().message);
  if (*stopped && **stopped == pairing->partner->fqdn) {
    return HttpResponse::Error(409, fmt::format("the Backup Service of pool {} is stopped; start it with `tandem "
                                                "service start backup --pool {}`",
                                                pairing->local->fqdn, pairing->local->fqdn));
  }
  nlohmann::json targets = nlohmann::json::object();
  for (const std::string& module : *modules) {
    auto head = store_.ModuleHead(module);
    if (!head) return HttpResponse::Error(503, head.error().message);
    targets[module] = head->seq;
  }
  shipper_.WakeUp();
  return HttpResponse::Json(200, nlohmann::json{{"pool", pairing->local->fqdn},
                                                {"paired_pool", pairing->partner->fqdn},
                                                {"targets", targets}}
                                     .dump());
}

HttpResponse BackupService::Service(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  std::string action = Param(request, "action");
  if (action != "start" && action != "stop") return HttpResponse::Error(400, "action must be start or stop");
  // Stopping is recorded against the current partner: a new pairing starts shipping
  // by itself.
  if (auto set = store_.SetSetting(kBackupStoppedSetting, action == "stop" ? pairing->partner->fqdn : "");
      !set) {
    return HttpResponse::Error(503, set.error().message);
  }
  spdlog::info("backup: the Backup Service of pool {} was {}", pairing->local->fqdn,
               action == "stop" ? "stopped" : "started");
  shipper_.WakeUp();
  return HttpResponse::Json(
      200, nlohmann::json{{"pool", pairing->local->fqdn}, {"service", action == "stop" ? "stopped" : "running"}}.dump());
}

HttpResponse BackupService::Verify(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  std::vector<std::string> all = pairing->export_modules;
  for (const std::string& module : pairing->import_modules) {
    if (std::find(all.begin(), all.end(), module) == all.end()) all.push_back(module);
  }
  auto modules = RequestedModules(request, all, *pairing);
  if (!modules) return modules.error();
  auto secret = SecretFor(*pairing);
  if (!secret) return HttpResponse::Error(503, secret.error().message);

  nlohmann::json results = nlohmann::json::array();
  bool consistent = true;
  auto add = [&](Result<nlohmann::json> result, const std::string& module, const std::string& source) {
    if (!result) {
      results.push_back({{"module", module}, {"source", source}, {"consistent", false}, {"error", result.error().message}});
      consistent = false;
      return;
    }
    consistent = consistent && result->value("consistent", false);
    results.push_back(std::move(*result));
  };
  for (const std::string& module : *modules) {
    auto in = [&](const std::vector<std::string>& list) { return std::find(list.begin(), list.end(), module) != list.end(); };
    if (in(pairing->export_modules)) {
      BackupVerifier verifier({}, store_, *pairing, *secret);
      add(verifier.VerifyLocalRows(module), module, pairing->local->fqdn);
    }
    if (in(pairing->import_modules)) {
      // The partner is the source of these rows: it compares them with our copy.
      add(CallPartner(*pairing, *secret, "POST", "/backup/verify_source", {{"module", module}}, "",
                      std::chrono::minutes(5)),
          module, pairing->partner->fqdn);
    }
  }
  return HttpResponse::Json(200, nlohmann::json{{"pool", pairing->local->fqdn},
                                                {"paired_pool", pairing->partner->fqdn},
                                                {"consistent", consistent},
                                                {"results", results}}
                                     .dump());
}

HttpResponse BackupService::SetAside(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  // Which modules' copies on the partner follow another change log of this pool
  // (this store was rebuilt after the loss): their cutoff is not a position here.
  std::set<std::string> rebuilt_modules;
  auto secret = SecretFor(*pairing);
  if (!secret) return HttpResponse::Error(503, secret.error().message);
  auto log = LocalChangeLogId(store_);
  if (!log) return HttpResponse::Error(503, log.error().message);
  for (std::string_view module : {kUserModule, kConferenceModule}) {
    auto head = store_.ModuleHead(module);
    if (!head) return HttpResponse::Error(503, head.error().message);
    std::string followed;
    if (auto progress = CallPartner(*pairing, *secret, "GET", "/backup/import", {{"module", std::string(module)}}, "",
                                    std::chrono::seconds(10))) {
      followed = progress->value("source_log", "");
    }
    int64_t cutoff = pairing->served_elsewhere ? DivergenceCutoff(*pairing->served_elsewhere, module) : 0;
    // Without the partner's word (unreachable, or a copy older than log identities),
    // a cutoff beyond this log's head can only belong to another log.
    if (FollowsAnotherLog(cutoff, followed, *log, head->seq)) rebuilt_modules.insert(std::string(module));
  }
  auto count = SetAsideDivergentRecords(store_, *pairing, NowUnixMillis(), rebuilt_modules);
  if (!count) return HttpResponse::Error(503, count.error().message);
  if (*count > 0) spdlog::warn("backup: set aside {} divergent records of pool {}", *count, pairing->local->fqdn);
  return HttpResponse::Json(200, nlohmann::json{{"pool", pairing->local->fqdn}, {"set_aside", *count}}.dump());
}

HttpResponse BackupService::Resend(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  std::string home = Param(request, "home");
  if (home != pairing->partner->fqdn) {
    return HttpResponse::Error(400, fmt::format("home must be the paired pool {}", pairing->partner->fqdn));
  }
  if (auto sent = shipper_.ResendRowsHomedIn(home); !sent) return HttpResponse::Error(503, sent.error().message);
  return HttpResponse::Json(200, nlohmann::json{{"pool", pairing->local->fqdn}, {"resent_home", home}}.dump());
}

HttpResponse BackupService::Divergent(const HttpRequest& request) {
  auto pairing = LocalPairingFor(request);
  if (!pairing) return pairing.error();
  nlohmann::json records = nlohmann::json::object();
  for (std::string_view module : {kUserModule, kConferenceModule}) {
    auto kept = store_.GetSetting(DivergentRecordsSettingKey(module));
    if (!kept) return HttpResponse::Error(503, kept.error().message);
    nlohmann::json list = nlohmann::json::parse(kept->value_or("[]"), nullptr, false);
    records[std::string(module)] = list.is_array() ? list : nlohmann::json::array();
  }
  return HttpResponse::Json(200, nlohmann::json{{"pool", pairing->local->fqdn}, {"divergent", records}}.dump());
}

HttpResponse BackupService::VerifySource(const HttpRequest& request) {
  auto linked = AuthenticatedPairing(request);
  if (!linked) return linked.error();
  const LinkSender* sender = &linked->first;
  const Pairing* pairing = &linked->second;
  if (std::find(pairing->export_modules.begin(), pairing->export_modules.end(), sender->module) ==
      pairing->export_modules.end()) {
    return HttpResponse::Error(409, fmt::format("pool {} does not ship '{}'", pairing->local->fqdn, sender->module));
  }
  auto secret = SecretFor(*pairing);
  if (!secret) return HttpResponse::Error(503, secret.error().message);
  BackupVerifier verifier({}, store_, *pairing, *secret);
  auto result = verifier.VerifyLocalRows(sender->module);
  if (!result) return HttpResponse::Error(503, result.error().message);
  return HttpResponse::Json(200, result->dump());
}

}  // namespace tandem
