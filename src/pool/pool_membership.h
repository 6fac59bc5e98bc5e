// Pool membership: this server renews a lease in its pool's store (the store is the
// arbiter; there is no consensus protocol of our own), and the pool's live set is
// every server whose lease has not expired. The live set maps routing groups to
// servers (RoutingGroupMap). Serves GET /pool/status.
//
// Thread-safety: thread-safe; owns one background thread (Start/Stop). Borrows the
// store, replica and metrics registry, which must outlive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "pool/routing_group_map.h"
#include "store/store.h"

namespace tandem {

struct MembershipOptions {
  std::string server_id;
  std::string pool;
  std::string admin_token;  // to ask other servers for their registrations
  std::chrono::milliseconds renew_interval{1000};
  std::chrono::milliseconds lease_expiry{3000};
};

class PoolMembership {
 public:
  PoolMembership(MembershipOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics,
                 const Clock& clock = SystemClock::Instance());
  ~PoolMembership();

  // Takes the first lease now (a server that cannot reach its store does not start).
  Status Start();
  // Stops renewing and releases the lease, so the others take over at once.
  void Stop();

  // Called (on the membership thread, or in Start) whenever the live set changes,
  // first with an empty `before`. Set before Start.
  using OwnershipListener = std::function<void(const RoutingGroupMap& before, const RoutingGroupMap& after)>;
  void SetOwnershipListener(OwnershipListener listener) { listener_ = std::move(listener); }

  RoutingGroupMap Current() const;
  void RegisterRoutes(HttpServer& http);

 private:
  void Loop();
  Status RenewAndRefresh();
  nlohmann::json LocalPoolStatus();

  const MembershipOptions options_;
  Store& store_;
  CmsReplica& replica_;
  const Clock& clock_;
  OwnershipListener listener_;
  Gauge* live_servers_;
  Counter* renew_failures_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                 // guarded by mu_
  RoutingGroupMap map_;                   // guarded by mu_
  std::vector<LeaseRecord> leases_;       // guarded by mu_: the last read, live or not
  bool initialized_ = false;              // guarded by mu_: map_ reflects a read
  int64_t next_expiry_ms_ = 0;            // guarded by mu_: the soonest other live lease's expiry
  std::thread thread_;
};

}  // namespace tandem
