// Takeover without re-registration: this server's soft state — registrations,
// subscriptions, publications — is written back to the pool's store in small
// group-committed batches (one transaction per batch, at most `flush_interval`
// after the change), and when routing groups move (a server's lease expired, a
// server joined or left) the server loads the rows of exactly the groups it gained
// and forgets the users of the groups it lost, once what it held of them is written
// back. Each row carries its user's routing group, so every gained group is loaded
// once, by its new owner. The owner of routing group 0 also deletes expired rows now
// and then.
//
// Thread-safety: thread-safe. The listeners it installs on the tables run on the
// thread that changes them (the SIP thread, under the table's lock) and only note
// the change; one background thread turns the notes into rows and writes the
// batches. OnOwnershipChanged runs on the membership thread. Borrows the store, the
// tables and the metrics registry, which must outlive it (Stop first).
#pragma once

#include <atomic>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

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
  // Noted changes are serialized by the writer, not on the tables' thread: building
  // the JSON under the binding table's lock was about a quarter of the SIP thread's
  // time per REGISTER.
  enum class Kind : uint8_t { kSubscription, kPublication };
  struct SubscriptionChange {
    Subscription subscription;
    bool removed = false;
  };
  using Change = std::variant<SubscriptionChange, std::vector<PublicationRecord>>;
  // A row's identity: its kind and key ("<Call-ID> <tag>", or an AOR).
  struct PendingKey {
    Kind kind;
    std::string key;
  };
  struct PendingKeyView {
    Kind kind;
    std::string_view key;
  };
  struct PendingHash {
    using is_transparent = void;
    size_t operator()(const PendingKeyView& k) const {
      return std::hash<std::string_view>{}(k.key) ^ static_cast<size_t>(k.kind);
    }
    size_t operator()(const PendingKey& k) const { return (*this)(PendingKeyView{k.kind, k.key}); }
  };
  struct PendingEqual {
    using is_transparent = void;
    static PendingKeyView View(const PendingKey& k) { return {k.kind, k.key}; }
    static PendingKeyView View(const PendingKeyView& k) { return k; }
    bool operator()(const auto& a, const auto& b) const {
      return View(a).kind == View(b).kind && View(a).key == View(b).key;
    }
  };

  void NoteUserChanged(const std::string& aor);
  void Queue(Kind kind, std::string_view key, Change change);
  SoftStateWrite RowOf(const PendingKey& key, const Change& change) const;
  Status FlushLocked();  // flush_mu_ held
  size_t QueuedLocked() const { return changed_users_.size() + pending_.size(); }
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

  // One batch at a time, in order (Loop, Flush, and a hand-over of routing groups).
  // Taken before mu_ and before the tables' locks.
  std::mutex flush_mu_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  // Registrations: only which users changed (an AOR may repeat). Their rows are
  // written from the binding table as it stands when the batch is taken, so changes
  // of a user within one batch are written once, and the SIP thread copies nothing.
  std::vector<std::string> changed_users_;  // guarded by mu_
  // Groups handed over to another server: their users are no longer in the table,
  // which must not be written back as "unregistered" over the new owner's rows.
  std::bitset<kRoutingGroups> handed_over_;  // guarded by mu_
  // Subscriptions and publications: the changed entry itself, coalesced by row (only
  // the newest state of a row is written).
  std::unordered_map<PendingKey, Change, PendingHash, PendingEqual> pending_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  size_t in_flight_ = 0;   // guarded by mu_: rows being written
  std::atomic<bool> cleans_expired_{false};  // this server owns routing group 0
  std::thread thread_;
};

}  // namespace tandem
