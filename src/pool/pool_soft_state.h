// Takeover without re-registration: this server's soft state — registrations,
// subscriptions, publications — is written back to the pool's store in small
// group-committed batches (one transaction per batch, at most `flush_interval`
// after the change), and when routing groups move (a server's lease expired, a
// server joined or left) the server loads the rows of exactly the groups it gained
// and forgets the users of the groups it lost. Each row carries its user's routing
// group, so every gained group is loaded once, by its new owner. The owner of
// routing group 0 also deletes expired rows now and then.
//
// Thread-safety: thread-safe. The listeners it installs on the tables run on the
// thread that changes them (the SIP thread) and only queue; one background thread
// writes the batches. OnOwnershipChanged runs on the membership thread. Borrows the
// store, the tables and the metrics registry, which must outlive it (Stop first).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "pool/routing_group_map.h"
#include "presence/publication_store.h"
#include "presence/subscription_table.h"
#include "registrar/binding_table.h"
#include "store/store.h"

namespace tandem {

struct SoftStateOptions {
  std::string pool;
  std::string server_id;
  // DESIGN §2: written back within 100 ms; a batch is one transaction.
  std::chrono::milliseconds flush_interval{50};
  size_t max_batch_rows = 5000;  // a larger backlog is written as several batches
  std::chrono::milliseconds cleanup_interval{std::chrono::seconds(10)};
};

class PoolSoftState {
 public:
  PoolSoftState(SoftStateOptions options, Store& store, BindingTable& bindings, PublicationStore& publications,
                SubscriptionTable& subscriptions, MetricsRegistry& metrics,
                const Clock& clock = SystemClock::Instance());
  ~PoolSoftState();

  // Installs the table listeners and starts the writer thread. Before SIP traffic.
  void Start();
  // Writes what is queued and stops the writer thread.
  void Stop();

  // The live set changed from `before` to `after`: loads the groups this server
  // gained (all it owns on the first call) and forgets those it lost.
  Status OnOwnershipChanged(const RoutingGroupMap& before, const RoutingGroupMap& after);

  // Writes everything queued now, in one transaction per batch.
  Status Flush();

  nlohmann::json StatusJson() const;

 private:
  void Queue(SoftStateWrite write);
  void Loop();
  Status LoadGroups(const std::vector<int>& groups);

  const SoftStateOptions options_;
  Store& store_;
  BindingTable& bindings_;
  PublicationStore& publications_;
  SubscriptionTable& subscriptions_;
  const Clock& clock_;
  Counter* rows_written_;
  Counter* batches_written_;
  Counter* write_failures_;
  Counter* rows_loaded_;
  Gauge* queued_rows_;  // queued or being written: 0 once everything is in the store

  std::mutex flush_mu_;  // one batch at a time, in order (Loop and Flush)
  mutable std::mutex mu_;
  std::condition_variable wake_;
  // Coalesced by "<kind> <key>": only the newest state of a row is written.
  std::unordered_map<std::string, SoftStateWrite> pending_;  // guarded by mu_
  bool stopping_ = false;                                     // guarded by mu_
  size_t in_flight_ = 0;                                      // guarded by mu_: rows being written
  std::atomic<bool> cleans_expired_{false};  // this server owns routing group 0
  std::thread thread_;
};

}  // namespace tandem
