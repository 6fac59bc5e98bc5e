#include "server/server.h"

#include <malloc.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/http_server.h"
#include "backend/backend_admin.h"
#include "backend/backend_service.h"
#include "cms/cms_agent.h"
#include "cms/cms_replica.h"
#include "pool/pool_membership.h"
#include "pool/pool_soft_state.h"
#include "server/sip_service.h"
#include "common/file_util.h"
#include "common/hash.h"
#include "conference/conference_service.h"
#include "backup/backup_service.h"
#include "dr/dr_service.h"
#include "dr/resiliency_monitor.h"
#include "common/metrics.h"
#include "store/store.h"
#include "topology/topology.h"
#include "userdata/user_data_service.h"
#include "users/user_service.h"

namespace tandem {

std::string ServerDirectory(const std::string& data_dir, const std::string& server_id) {
  return data_dir + "/servers/" + server_id;
}

std::string GenerateAdminToken() { return RandomHex(32); }

Result<std::string> LoadOrCreateAdminToken(const std::string& path) { return LoadOrCreateSecretFile(path); }

namespace {

std::string ResolveAgainst(const std::string& base, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  return base + "/" + path;
}

Result<std::unique_ptr<Store>> OpenPoolStore(const PoolSpec& pool, const std::string& data_dir) {
  switch (pool.backend.type) {
    case BackendType::kSqlite: {
      std::string path = ResolveAgainst(data_dir, pool.backend.sqlite_path);
      auto store = OpenSqliteStore(path);
      if (!store) {
        return MakeError(store.error().code, fmt::format("cannot open the back-end store of pool {}: {}", pool.fqdn,
                                                         store.error().message));
      }
      return store;
    }
    case BackendType::kPostgres: {
      // The DSN may name the primary and its standby (host=a,b port=x,y): libpq then
      // connects to whichever accepts writes, so servers follow a promoted standby.
      auto dsn = MultiHostDsn(pool.backend.postgres_dsn, pool.backend.postgres_mirror_dsn);
      if (!dsn) return std::unexpected(dsn.error());
      auto store = OpenPostgresStore(*dsn);
      if (!store) {
        return MakeError(store.error().code, fmt::format("cannot open the back-end store of pool {}: {}", pool.fqdn,
                                                         store.error().message));
      }
      return store;
    }
  }
  return MakeError(ErrorCode::kInternal, "unknown back-end type");
}

// Meeting content uploads go up to 50 MiB; the admin API leaves room for that, and
// for such a file in base64 inside a Backup Service batch.
constexpr size_t kMaxAdminBodyBytes = size_t{96} << 20;

// Who may see a presentity's presence, from its privacy settings and contact list.
WatcherAuthorizer AuthorizerFor(Store& store) {
  return [&store](const std::string& presentity, const std::string& watcher) {
    auto policy = store.GetPresencePolicy(presentity);
    if (!policy) return WatcherAccess::kNotAllowed;
    if (policy->Blocks(watcher)) return WatcherAccess::kBlocked;
    return policy->Allows(watcher) ? WatcherAccess::kAllowed : WatcherAccess::kNotAllowed;
  };
}

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, std::string token)
      : options_(std::move(options)), token_(std::move(token)), http_(io_, token_, kMaxAdminBodyBytes) {}

  ~ServerImpl() override { Shutdown(); }

  Status Init(std::unique_ptr<CmsReplica> replica) {
    replica_ = std::move(replica);
    auto snapshot = replica_->Current();
    const PoolSpec* pool = nullptr;
    const ServerSpec* self = snapshot.topology->FindServer(options_.server_id, &pool);
    if (self == nullptr) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("server '{}' is not in CMS version {} of the topology", options_.server_id,
                                   snapshot.document->version));
    }
    pool_fqdn_ = pool->fqdn;
    auto store = OpenPoolStore(*pool, options_.data_dir);
    if (!store) return std::unexpected(store.error());
    store_ = std::move(*store);

    agent_ = std::make_unique<CmsAgent>(CmsAgentOptions{.server_id = options_.server_id, .admin_token = token_},
                                        *replica_, *store_, metrics_);
    if (auto bootstrapped = agent_->BootstrapIfEmpty(); !bootstrapped) return bootstrapped;

    // Whether the paired pool is reachable; if not, for long enough, its users are served here.
    resiliency_ = std::make_unique<ResiliencyMonitor>(
        ResiliencyOptions{.own_pool = pool_fqdn_, .admin_token = token_}, *replica_, metrics_);
    sip_ = std::make_unique<SipService>(*snapshot.topology, *self, *store_, metrics_, token_, AuthorizerFor(*store_));
    sip_->SetPoolPeers(PoolPeersOf(*snapshot.topology, *self));
    // Routing between pools follows the newest routing state, and resiliency mode.
    sip_->SetCmsReplica(*replica_, resiliency_.get());
    // Soft state goes back to the store, and comes from it for the routing groups
    // this server gains; SIP routes a group here only once its state is loaded.
    soft_state_ = std::make_unique<PoolSoftState>(
        SoftStateOptions{.pool = pool_fqdn_, .server_id = options_.server_id}, *store_, sip_->bindings(),
        sip_->presence().publications(), sip_->presence().subscriptions(), metrics_);
    soft_state_->Start();
    membership_ = std::make_unique<PoolMembership>(
        MembershipOptions{.server_id = options_.server_id,
                          .pool = pool_fqdn_,
                          .admin_token = token_,
                          .renew_interval = snapshot.topology->lease_renew_interval,
                          .lease_expiry = snapshot.topology->lease_expiry},
        *store_, *replica_, metrics_);
    membership_->SetOwnershipListener([this](const RoutingGroupMap& before, const RoutingGroupMap& after) {
      if (auto loaded = soft_state_->OnOwnershipChanged(before, after); !loaded) {
        spdlog::error("pool: {}; those users must register again", loaded.error().message);
      }
      sip_->SetRoutingGroups(after);
    });
    if (auto joined = membership_->Start(); !joined) return joined;
    users_ = std::make_unique<UserService>(token_, *replica_, *store_, pool_fqdn_);
    if (auto started = sip_->Start(); !started) return started;
    user_data_ = std::make_unique<UserDataService>(token_, *replica_, *store_, pool_fqdn_, resiliency_.get());
    user_data_->SetPresenceChangeHook([this](const std::string& uri) { sip_->PresentityChanged(uri); });
    conference_ = std::make_unique<ConferenceService>(token_, *replica_, *store_, pool_fqdn_, resiliency_.get());
    backup_ = std::make_unique<BackupService>(
        BackupServiceOptions{
            .shipper = {.server_id = options_.server_id, .pool = pool_fqdn_, .data_dir = options_.data_dir},
            .admin_token = token_},
        *store_, *replica_, metrics_);
    // Watches every PostgreSQL pair, remembering (in this server's directory) whether
    // the standby was synchronous: a back-end failover needs that once the primary is gone.
    backend_ = std::make_unique<BackendService>(
        BackendServiceOptions{.observations_path =
                                  ServerDirectory(options_.data_dir, options_.server_id) + "/backend-sync.json"},
        *replica_);

    RegisterRoutes();
    agent_->RegisterRoutes(http_);
    users_->RegisterRoutes(http_);
    membership_->RegisterRoutes(http_);
    user_data_->RegisterRoutes(http_);
    conference_->RegisterRoutes(http_);
    backup_->RegisterRoutes(http_);
    dr_ = std::make_unique<DrService>(token_, pool_fqdn_, *store_, *replica_);
    dr_->RegisterRoutes(http_);
    backend_->RegisterRoutes(http_);
    auto port = http_.Listen(self->address, self->admin_port);
    if (!port) return std::unexpected(port.error());
    spdlog::info("server {} of pool {}: admin API on {}:{}, CMS version {}", options_.server_id, pool_fqdn_,
                 self->address, *port, replica_->Current().document->version);
    return OkStatus();
  }

  void Run() override {
    boost::asio::signal_set signals(io_, SIGTERM, SIGINT);
    signals.async_wait([this](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      spdlog::info("received signal {}; shutting down", signal);
      Stop();
    });
    agent_->Start();
    backup_->Start();
    backend_->Start();
    resiliency_->Start();
    auto work = boost::asio::make_work_guard(io_);
    // Two threads: a slow admin call (a forwarded publish) never blocks health checks.
    std::thread helper([this] { io_.run(); });
    io_.run();
    helper.join();
    Shutdown();
    spdlog::info("server {} stopped", options_.server_id);
  }

  void Stop() override {
    http_.Stop();
    io_.stop();
  }

 private:
  void Shutdown() {
    // No more SIP changes, the last soft state written back, then the lease released:
    // the others take over at once, with everything.
    if (sip_) sip_->Stop();
    if (soft_state_) soft_state_->Stop();
    if (membership_) membership_->Stop();
    if (agent_) agent_->Stop();
    if (backup_) backup_->Stop();  // releases the backup lease: another server ships at once
    if (backend_) backend_->Stop();
    if (resiliency_) resiliency_->Stop();
  }

  void RegisterRoutes() {
    http_.Route("GET", "/health", [](const HttpRequest&) { return HttpResponse::Json(200, "{\"status\":\"ok\"}\n"); },
                HttpServer::Access::kPublic);
    http_.Route("GET", "/status", [this](const HttpRequest&) {
      nlohmann::json status{
          {"server", options_.server_id},
          {"pool", pool_fqdn_},
          {"pid", ::getpid()},
          {"uptime_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
          {"cms", agent_->StatusJson()},
          {"sip", sip_->StatusJson()},
          {"backup", {{"holds_lease", backup_->HoldsLease()}}},
          {"resiliency", resiliency_->StatusJson()}};
      return HttpResponse::Json(200, status.dump());
    });
    http_.Route("GET", "/metrics", [this](const HttpRequest&) {
      metrics_.GetGauge("tandem_uptime_seconds", "Seconds since this server started")
          ->Set(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      // Live heap bytes (not resident pages): what data structures really hold, apart
      // from the allocator's fragmentation.
      metrics_.GetGauge("tandem_heap_in_use_bytes", "bytes allocated and not freed (glibc mallinfo2)")
          ->Set(static_cast<double>(::mallinfo2().uordblks + ::mallinfo2().hblkhd));
      HttpResponse response;
      response.content_type = "text/plain; version=0.0.4";
      response.body = metrics_.RenderPrometheus() +
                      fmt::format("tandem_admin_unauthorized_requests_total {}\n", http_.unauthorized_requests());
      return response;
    });
  }

  const ServerOptions options_;
  const std::string token_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  boost::asio::io_context io_;
  MetricsRegistry metrics_;
  HttpServer http_;
  std::unique_ptr<CmsReplica> replica_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CmsAgent> agent_;
  std::unique_ptr<PoolMembership> membership_;
  std::unique_ptr<UserService> users_;
  std::unique_ptr<ResiliencyMonitor> resiliency_;  // before sip_ and the services that borrow it
  std::unique_ptr<SipService> sip_;
  std::unique_ptr<PoolSoftState> soft_state_;  // borrows sip_'s tables
  std::unique_ptr<UserDataService> user_data_;
  std::unique_ptr<ConferenceService> conference_;
  std::unique_ptr<BackupService> backup_;
  std::unique_ptr<DrService> dr_;
  std::unique_ptr<BackendService> backend_;
  std::string pool_fqdn_;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  auto topology_text = ReadFile(options.topology_path);
  if (!topology_text) return std::unexpected(topology_text.error());
  TopologyParseResult parsed = ParseTopology(*topology_text, options.topology_path);
  if (parsed.HasErrors()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("the topology is invalid: {} (run `tandem topology validate {}`)",
                                 parsed.diagnostics.front().ToString(), options.topology_path));
  }
  std::string server_dir = ServerDirectory(options.data_dir, options.server_id);
  if (auto made = MakeDirectories(server_dir); !made) return std::unexpected(made.error());
  std::string token_file = options.token_file.empty() ? options.data_dir + "/admin.token" : options.token_file;
  auto token = LoadOrCreateAdminToken(token_file);
  if (!token) return std::unexpected(token.error());

  CmsDocument bootstrap{0, 0, std::filesystem::path(options.topology_path).filename().string(), *topology_text};
  auto replica = CmsReplica::Open(server_dir + "/cms-replica.json", std::move(bootstrap));
  if (!replica) return std::unexpected(replica.error());

  auto server = std::make_unique<ServerImpl>(options, *token);
  if (auto initialized = server->Init(std::move(*replica)); !initialized) return std::unexpected(initialized.error());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace tandem
