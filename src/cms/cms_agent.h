// The CMS agent of one server. It keeps the local replica current (pulling from the
// effective CMS master pool and its standby, woken early by pushes, polling as a
// safety net), and — on the servers of the master pool — publishes new versions into
// the pool's store. It serves the /cms/* admin routes, including the three steps of
// a CMS failover that `tandem cms failover` drives (plan, read-only, promote).
//
// Fencing: the replica holds the newest document by (master_epoch, version), and a
// server acts on the master that document names. A master-pool server also asks
// the standby for a higher epoch; on finding one it steps down: the versions its
// pool's store holds that the new master never got are moved to the store setting
// kCmsDivergentSetting (shown by `tandem cms status`, never merged or dropped),
// then the new document is installed, and the Backup Service ships the new
// master's versions to this pool from then on.
//
// Thread-safety: thread-safe. Owns one background thread (Start/Stop). Borrows the
// replica, the store and the metrics registry, which must outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "dr/routing_rules.h"
#include "common/metrics.h"
#include "store/store.h"

namespace tandem {

// Store settings of the CMS. kCmsReadOnlySetting: the standby a planned failover
// moves the CMS to ("" or absent: publishing allowed). kCmsDivergentSetting: a JSON
// array of the versions set aside when this pool stepped down as a stale master.
inline constexpr std::string_view kCmsReadOnlySetting = "cms.read_only";
inline constexpr std::string_view kCmsDivergentSetting = "cms.divergent_versions";

struct CmsAgentOptions {
  std::string server_id;
  std::string admin_token;  // also authenticates server-to-server calls
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds peer_timeout{1000};
};

class CmsAgent {
 public:
  CmsAgent(CmsAgentOptions options, CmsReplica& replica, Store& pool_store, MetricsRegistry& metrics);
  ~CmsAgent();
  CmsAgent(const CmsAgent&) = delete;
  CmsAgent& operator=(const CmsAgent&) = delete;

  // On a server of the master pool with an empty store: publishes the replica's
  // (bootstrap) topology as version 1. Several servers may race; one wins. Unless
  // the standby serves a higher master epoch naming another master (this pool lost
  // its store and the CMS was failed over): then that document is installed and
  // nothing is published.
  Status BootstrapIfEmpty();

  void Start();
  void Stop();
  void WakeUp();  // a push arrived: sync now rather than at the next poll

  // Validates `toml` and, on a master-pool server, stores it as the next version and
  // pushes it to every server; elsewhere forwards to the master pool (once: a
  // `forwarded` request is never forwarded again). An invalid topology changes
  // nothing (kInvalidArgument with the diagnostics in the message); a master made
  // read-only by a CMS failover refuses (kFailedPrecondition).
  Result<int64_t> Publish(const std::string& toml, const std::string& file_name, bool forwarded = false);

  // Publishes the newest topology again with the DR routing state changed by
  // `update`, on the master after checking the routing rules (dr/routing_rules.h)
  // against its newest version; elsewhere forwards to the master pool once.
  Result<int64_t> PublishRouting(const RoutingUpdate& update, bool forwarded = false);

  void RegisterRoutes(HttpServer& http);
  nlohmann::json StatusJson() const;  // this server's CMS view, for /status

 private:
  // The newest version of a pool's store: its number, epoch, master and time.
  struct Head {
    int64_t version = 0;
    int64_t master_epoch = 0;
    std::string master_pool;
    int64_t published_at_ms = 0;
    nlohmann::json ToJson() const;
  };

  std::string LocalPool(const CmsReplica::Snapshot& snapshot) const;
  bool IsMasterPool(const CmsReplica::Snapshot& snapshot) const;
  void SyncLoop();
  void SyncOnce();
  Status SyncFromStore();
  // Pulls from the master pool and from its standby, installing whatever is newer.
  Status SyncFromMasterPools(const CmsReplica::Snapshot& snapshot);
  // A master-pool server: whether the standby knows a higher epoch (then step down).
  void CheckStandbyForNewerEpoch(const CmsReplica::Snapshot& snapshot);
  // The document `pool` serves if newer than `have`; nullopt if not newer;
  // kUnavailable when no server of the pool answers.
  Result<std::optional<CmsDocument>> FetchNewer(const PoolSpec& pool, const CmsDocument& have);
  // Installs `document` if newer; first steps down (SetAsideDivergentVersions) when
  // it moves the master away from this server's pool.
  Result<bool> InstallNewer(CmsDocument document, std::string_view source);
  Status SetAsideDivergentVersions(const CmsDocument& newer);
  Result<std::optional<Head>> StoreHead();
  Result<Head> PoolHead(const PoolSpec& pool);  // asks the pool's servers (GET /cms/head)
  // With `routing_update`, `toml` is ignored: the newest topology is kept.
  Result<int64_t> PublishLocally(const std::string& toml, const std::string& file_name,
                                 const RoutingUpdate* routing_update = nullptr);
  Result<int64_t> PublishThroughMaster(const CmsReplica::Snapshot& snapshot, std::string_view path,
                                       const nlohmann::json& body);
  // Pushes `document_json` to every server but this one; one entry per server.
  nlohmann::json PushToAllServers(const Topology& topology, const std::string& document_json);
  nlohmann::json ClusterStatusJson();
  void RecordSync(const Status& status);

  // The failover steps (see `tandem cms failover`).
  HttpResponse FailoverPlan(const HttpRequest& request);
  HttpResponse SetReadOnly(const HttpRequest& request);
  HttpResponse Promote(const HttpRequest& request);
  // When `request` names another pool (?pool=), its answer from that pool.
  std::optional<HttpResponse> ForwardIfOtherPool(const HttpRequest& request);

  const CmsAgentOptions options_;
  CmsReplica& replica_;
  Store& store_;
  Counter* sync_failures_;
  Gauge* replica_version_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool wake_requested_ = false;  // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::thread thread_;
  std::mutex publish_mu_;  // one publish (or promotion) at a time from this server
  std::mutex install_mu_;  // one step-down-and-install at a time

  mutable std::mutex status_mu_;
  bool master_reachable_ = false;  // guarded by status_mu_
  std::string last_sync_error_;    // guarded by status_mu_
  std::chrono::steady_clock::time_point last_sync_ok_{};  // guarded by status_mu_
};

}  // namespace tandem
