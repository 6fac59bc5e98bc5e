// The sending side of the Backup Service. On the one server of a pool that holds
// the pool's backup lease (a named lease in the pool's store; another server takes
// it over within the lease expiry when the holder dies), it ships the pool's change
// log to the paired pool, per module, in bounded batches (zstd, checksummed, signed
// with the pairing secret), and records what the partner acknowledged; the store
// then prunes what was acknowledged. When the partner holds nothing yet (a new
// pairing of pools that already hold data) or lost what it had, it first ships a
// snapshot of the module, then catches up from the snapshot's sequence.
//
// The partner's applied sequence is the truth the shipper resumes from (asked after
// every error and at every start), so a shipper killed mid-batch neither loses nor
// repeats anything: a batch it sent twice is skipped by the store on the partner.
//
// Thread-safety: thread-safe. Owns one background thread (Start/Stop). Borrows the
// store, replica and metrics registry, which must outlive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "backup/pairing.h"
#include "cms/cms_replica.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "store/store.h"

namespace tandem {

struct ShipperOptions {
  std::string server_id;
  std::string pool;
  std::string data_dir;  // holds the pairing secrets
  std::chrono::milliseconds poll_interval{50};
  std::chrono::milliseconds lease_expiry{3000};
  std::chrono::milliseconds peer_timeout{5000};
  std::chrono::milliseconds max_retry_delay{2000};
  std::chrono::milliseconds handshake_interval{5000};  // how often to re-ask the partner where it stands
  int batch_records = 2000;
  size_t batch_bytes = size_t{4} << 20;  // payload bytes; a single larger record goes alone
  // Snapshot chunks: each is one request and one transaction on the partner, so
  // fewer, larger ones make an initial sync faster; the partner's writers wait for
  // one chunk's transaction (some tens of milliseconds at most).
  int snapshot_chunk_rows = 20000;
  size_t snapshot_chunk_bytes = size_t{8} << 20;  // of JSON text; a single larger row goes alone
};

// Settings in the pool's store that every server reads for status.
inline constexpr std::string_view kBackupStoppedSetting = "backup.stopped";  // = the partner's FQDN when stopped
std::string ExportErrorSettingKey(std::string_view partner_pool, std::string_view module);
// Rows of an initial sync sent so far ("" when none is under way).
std::string InitialSyncSettingKey(std::string_view partner_pool, std::string_view module);
std::string BackupLeaseName(std::string_view pool);
// Records of the module up to this sequence never ship (set aside as divergent).
std::string SkipThroughSettingKey(std::string_view module);

class BackupShipper {
 public:
  BackupShipper(ShipperOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics,
                const Clock& clock = SystemClock::Instance());
  ~BackupShipper();
  BackupShipper(const BackupShipper&) = delete;
  BackupShipper& operator=(const BackupShipper&) = delete;

  void Start();
  // Stops shipping and releases the lease so another server takes over at once.
  void Stop();
  // Something may be waiting to ship (or a sync was asked for): do not wait for the poll.
  void WakeUp();

  bool HoldsLease() const;

  // Sends the partner a snapshot of the user and conference rows homed in
  // `home_pool` (the partner's own users, served here during a disaster failover):
  // at failback they replace the partner's divergent rows. Any thread; blocks.
  Status ResendRowsHomedIn(const std::string& home_pool);

 private:
  void Loop();
  Status ShipOnce();
  bool HoldLease();
  Status ShipModule(const Pairing& pairing, const std::string& secret, const std::string& module);
  // Sends every row of `module` homed in `home_pool` (normally the local pool).
  Result<int64_t> SendSnapshot(const Pairing& pairing, const std::string& secret, const std::string& module,
                               const std::string& home_pool);
  Status SendBatches(const Pairing& pairing, const std::string& secret, const std::string& module, int64_t& cursor);
  void RecordError(const std::string& partner, const std::string& module, const std::string& reason);
  void UpdateLagGauges(const Pairing& pairing);

  const ShipperOptions options_;
  Store& store_;
  CmsReplica& replica_;
  MetricsRegistry& metrics_;
  const Clock& clock_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                       // guarded by mu_
  bool woken_ = false;                          // guarded by mu_
  bool holds_lease_ = false;                    // guarded by mu_

  // Loop thread only.
  int64_t lease_until_ms_ = 0;
  int64_t lag_updated_ms_ = 0;
  std::map<std::string, int64_t> cursors_;                // module -> what the partner has applied
  std::map<std::string, int64_t> handshake_at_ms_;        // module -> when the partner was last asked
  std::map<std::string, std::string> recorded_errors_;    // module -> error as last written to the store
  std::thread thread_;
};

}  // namespace tandem
