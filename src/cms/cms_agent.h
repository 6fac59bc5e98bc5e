// The CMS agent of one server. It keeps the local replica current (pulling from the
// CMS master pool, woken early by pushes, polling as a safety net), and — on the
// servers of the master pool — publishes new versions into the pool's store.
// It serves the /cms/* admin routes.
//
// Thread-safety: thread-safe. Owns one background thread (Start/Stop). Borrows the
// replica, the store and the metrics registry, which must outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "common/metrics.h"
#include "store/store.h"

namespace tandem {

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
  // (bootstrap) topology as version 1. Several servers may race; one wins.
  Status BootstrapIfEmpty();

  void Start();
  void Stop();
  void WakeUp();  // a push arrived: sync now rather than at the next poll

  // Validates `toml` and, on a master-pool server, stores it as the next version and
  // pushes it to every server; elsewhere forwards to the master pool. An invalid
  // topology changes nothing (kInvalidArgument with the diagnostics in the message).
  Result<int64_t> Publish(const std::string& toml, const std::string& file_name);

  void RegisterRoutes(HttpServer& http);
  nlohmann::json StatusJson() const;  // this server's CMS view, for /status

 private:
  bool IsMasterPool(const CmsReplica::Snapshot& snapshot) const;
  void SyncLoop();
  void SyncOnce();
  Status SyncFromStore();
  Status SyncFromMaster(const CmsReplica::Snapshot& snapshot);
  Result<int64_t> MasterVersion(const CmsReplica::Snapshot& snapshot);
  Result<int64_t> PublishLocally(const std::string& toml, const std::string& file_name);
  void PushToAllServers(const Topology& topology);
  nlohmann::json ClusterStatusJson();
  void RecordSync(const Status& status);

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
  std::mutex publish_mu_;  // one publish at a time from this server

  mutable std::mutex status_mu_;
  bool master_reachable_ = false;  // guarded by status_mu_
  std::string last_sync_error_;    // guarded by status_mu_
  std::chrono::steady_clock::time_point last_sync_ok_{};  // guarded by status_mu_
};

}  // namespace tandem
