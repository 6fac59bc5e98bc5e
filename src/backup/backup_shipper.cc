#include "backup/backup_shipper.h"

#include <algorithm>
#include <future>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backup/backup_link.h"
#include "backup/backup_status.h"
#include "backup/batch_codec.h"

namespace tandem {

std::string ExportErrorSettingKey(std::string_view partner_pool, std::string_view module) {
  return fmt::format("backup.export_error.{}.{}", partner_pool, module);
}

std::string InitialSyncSettingKey(std::string_view partner_pool, std::string_view module) {
  return fmt::format("backup.initial_sync.{}.{}", partner_pool, module);
}

std::string SkipThroughSettingKey(std::string_view module) { return fmt::format("backup.skip_through.{}", module); }

std::string BackupLeaseName(std::string_view pool) { return fmt::format("backup:{}", pool); }

BackupShipper::BackupShipper(ShipperOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics,
                             const Clock& clock)
    : options_(std::move(options)), store_(store), replica_(replica), metrics_(metrics), clock_(clock) {}

BackupShipper::~BackupShipper() { Stop(); }

void BackupShipper::Start() { thread_ = std::thread([this] { Loop(); }); }

void BackupShipper::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackupShipper::WakeUp() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  wake_.notify_all();
}

bool BackupShipper::HoldsLease() const {
  std::lock_guard lock(mu_);
  return holds_lease_;
}

void BackupShipper::Loop() {
  auto delay = options_.poll_interval;
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) break;
    }
    Status shipped = ShipOnce();
    // Back off while the partner is unreachable or refusing; poll briskly otherwise.
    delay = shipped ? options_.poll_interval : std::min(delay * 2, options_.max_retry_delay);
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, delay, [this] { return stopping_ || woken_; });
    woken_ = false;
  }
  bool held = HoldsLease();
  if (held) (void)store_.ReleaseNamedLease(BackupLeaseName(options_.pool), options_.server_id);
}

bool BackupShipper::HoldLease() {
  int64_t now = ToUnixMillis(clock_.Now());
  int64_t expiry = options_.lease_expiry.count();
  // Renew once a third of the lease has passed: a holder that stalls longer than
  // two thirds of it may lose the lease, and must then stop shipping.
  bool held = lease_until_ms_ - now > expiry * 2 / 3;
  if (!held) {
    auto lease = store_.TryAcquireNamedLease(BackupLeaseName(options_.pool), options_.server_id, now, now + expiry);
    held = lease && lease->holder == options_.server_id;
    lease_until_ms_ = held ? now + expiry : 0;
  }
  std::lock_guard lock(mu_);
  if (held != holds_lease_) {
    spdlog::info("backup: server {} {} the backup lease of pool {}", options_.server_id, held ? "took" : "lost",
                 options_.pool);
  }
  holds_lease_ = held;
  return held;
}

Status BackupShipper::ShipOnce() {
  auto cms = replica_.Current();
  auto pairing = PairingOf(cms.topology, options_.pool, *cms.document);
  if (!pairing) return OkStatus();  // not paired: nothing to ship
  if (!HoldLease()) {
    cursors_.clear();  // whoever ships next asks the partner where to resume
    return OkStatus();
  }
  auto stopped = store_.GetSetting(kBackupStoppedSetting);
  if (!stopped) return std::unexpected(stopped.error());
  if (*stopped && **stopped == pairing->partner->fqdn) return OkStatus();  // `tandem service stop backup`
  auto secret = LoadOrCreatePairingSecret(options_.data_dir, pairing->local->fqdn, pairing->partner->fqdn);
  if (!secret) return std::unexpected(secret.error());

  Status result = OkStatus();
  UpdateLagGauges(*pairing);
  for (const std::string& module : pairing->export_modules) {
    Status shipped = ShipModule(*pairing, *secret, module);
    if (!shipped) {
      cursors_.erase(module);
      RecordError(pairing->partner->fqdn, module, shipped.error().message);
      result = shipped;
    } else {
      RecordError(pairing->partner->fqdn, module, "");
    }
  }
  return result;
}

void BackupShipper::UpdateLagGauges(const Pairing& pairing) {
  int64_t now = ToUnixMillis(clock_.Now());
  if (now - lag_updated_ms_ < 1000) return;  // a status read per second is plenty for metrics
  lag_updated_ms_ = now;
  auto view = LocalBackupView(store_, pairing, pairing.topology->backup_sync_interval, now);
  if (!view) return;
  for (const auto& [module, exported] : (*view)["export"].items()) {
    metrics_
        .GetGauge("tandem_backup_lag_seconds", "Age of the oldest change the paired pool has not acknowledged",
                  fmt::format("direction=\"export\",partner=\"{}\",module=\"{}\"", pairing.partner->fqdn, module))
        ->Set(exported.value("lag_seconds", 0.0));
  }
}

void BackupShipper::RecordError(const std::string& partner, const std::string& module, const std::string& reason) {
  std::string key = ExportErrorSettingKey(partner, module);
  auto recorded = recorded_errors_.find(key);
  if (recorded != recorded_errors_.end() && recorded->second == reason) return;
  if (!reason.empty()) {
    spdlog::warn("backup: shipping {} to {} failed: {}", module, partner, reason);
    metrics_
        .GetCounter("tandem_backup_errors_total", "Backup batches that failed, per direction and module",
                    fmt::format("direction=\"export\",partner=\"{}\",module=\"{}\"", partner, module))
        ->Increment();
  }
  if (store_.SetSetting(key, reason)) recorded_errors_[key] = reason;
}

Status BackupShipper::ShipModule(const Pairing& pairing, const std::string& secret, const std::string& module) {
  const std::string& partner = pairing.partner->fqdn;
  auto cursor = cursors_.find(module);
  // Ask again now and then even while all goes well: a partner whose copy was lost
  // or restored says so only when asked, and an idle module sends no batch to find out.
  int64_t now = ToUnixMillis(clock_.Now());
  if (cursor != cursors_.end() && now - handshake_at_ms_[module] >= options_.handshake_interval.count()) {
    cursors_.erase(cursor);
    cursor = cursors_.end();
  }
  if (cursor == cursors_.end()) {
    handshake_at_ms_[module] = now;
    // Where to resume: what the partner says it applied, in its own store.
    auto progress = CallPartner(pairing, secret, "GET", "/backup/import", {{"module", module}}, "", options_.peer_timeout);
    if (!progress) return std::unexpected(progress.error());
    int64_t applied = progress->value("applied_seq", int64_t{0});
    const std::string followed_log = progress->value("source_log", "");
    int64_t snapshot_in_progress = progress->value("snapshot_seq", int64_t{0});
    auto exported = store_.ListExportProgress();
    if (!exported) return std::unexpected(exported.error());
    int64_t acked = 0;
    for (const ExportProgress& e : *exported) {
      if (e.partner_pool == partner && e.module == module) acked = e.acked_seq;
    }
    auto head = store_.ModuleHead(module);
    if (!head) return std::unexpected(head.error());
    auto log = LocalChangeLogId(store_);
    if (!log) return std::unexpected(log.error());
    // The partner's copy follows another change log of this pool (this store was
    // rebuilt; a copy from before logs had identities says so by claiming more than
    // this log holds): its applied sequence is not a position in this log, and must
    // never be taken as acknowledged here (that would prune and skip real changes).
    const bool other_log = FollowsAnotherLog(applied, followed_log, *log, head->seq);
    if (other_log) {
      if (pairing.served_elsewhere) {
        // The partner's copy of this pool's users is the truth now; a snapshot from
        // here would overwrite it. It comes once this pool serves its users again.
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("pool {}'s copy of {} follows another change log of this pool (its store was "
                                     "rebuilt); it gets a snapshot once this pool serves its users again",
                                     partner, module));
      }
      spdlog::warn("backup: pool {}'s copy of {} follows another change log of this pool (applied up to {}, this "
                   "log's head is {}): it gets a snapshot of this one",
                   partner, module, applied, head->seq);
      applied = 0;
    }
    // A snapshot when the partner holds nothing of a module that has data, lost
    // what it had acknowledged (its copy was restored or rebuilt), or was cut off in
    // the middle of a snapshot.
    // Never while another pool serves this pool's users: its copy is the truth then.
    auto skip_setting = store_.GetSetting(SkipThroughSettingKey(module));
    if (!skip_setting) return std::unexpected(skip_setting.error());
    int64_t skip_through = skip_setting->has_value() ? std::atoll((*skip_setting)->c_str()) : 0;
    // Acknowledged beyond what the partner holds means it lost part of its copy,
    // unless that part is what was set aside as divergent.
    bool lost_copy = applied < acked && acked > skip_through;
    if (!pairing.served_elsewhere &&
        (other_log || snapshot_in_progress > 0 || lost_copy || (applied == 0 && head->seq > 0))) {
      auto snapshot_seq = SendSnapshot(pairing, secret, module, pairing.local->fqdn);
      if (!snapshot_seq) return std::unexpected(snapshot_seq.error());
      applied = *snapshot_seq;
    }
    if (auto recorded = store_.RecordExportAck(partner, module, applied, ToUnixMillis(clock_.Now())); !recorded) {
      return recorded;
    }
    cursor = cursors_.emplace(module, applied).first;
  }
  return SendBatches(pairing, secret, module, cursor->second);
}

Result<int64_t> BackupShipper::SendSnapshot(const Pairing& pairing, const std::string& secret,
                                            const std::string& module, const std::string& home_pool) {
  spdlog::info("backup: initial sync of {} homed in {} to {} starts", module, home_pool, pairing.partner->fqdn);
  auto head_before = store_.ModuleHead(module);
  if (!head_before) return std::unexpected(head_before.error());
  // The partner records, with the last chunk, that its copy follows this log.
  auto log = LocalChangeLogId(store_);
  if (!log) return std::unexpected(log.error());
  int64_t rows_sent = 0;  // by the sending thread, read once it is joined
  const std::string progress_key = InitialSyncSettingKey(pairing.partner->fqdn, module);
  auto send_chunk = [&](const EncodedBody& body, int64_t rows, int64_t snapshot_seq, bool first, bool last) -> Status {
    auto applied = CallPartner(pairing, secret, "POST", "/backup/snapshot",
                               {{"module", module},
                                {"home_pool", home_pool},
                                {"snapshot_seq", std::to_string(snapshot_seq)},
                                {"first", first ? "1" : "0"},
                                {"last", last ? "1" : "0"},
                                {"log", *log},
                                {"sha256", body.sha256}},
                               body.compressed, options_.peer_timeout);
    if (!applied) return std::unexpected(applied.error());
    rows_sent += rows;
    // Progress for `tandem backup status|sync`, whichever server they ask.
    return store_.SetSetting(progress_key, std::to_string(rows_sent));
  };
  // Pipelined: the partner applies chunk N while this thread scans and encodes chunk
  // N + 1, which takes about as long. Chunks still go one at a time and in order.
  std::future<Status> in_flight;
  auto wait_in_flight = [&]() -> Status { return in_flight.valid() ? in_flight.get() : OkStatus(); };
  bool first = true;
  // Chunks sent during the scan carry the head seen before it (a lower bound); the
  // last one carries the head of the scan's own consistent read, from which the
  // partner resumes.
  const int64_t early_seq = std::max<int64_t>(head_before->seq, 1);
  auto snapshot_seq = store_.ScanSnapshot(
      module, home_pool, options_.snapshot_chunk_rows, options_.snapshot_chunk_bytes,
      [&](SnapshotChunk&& chunk) -> Status {
        EncodedBody body = EncodeSnapshotChunk(chunk.json);
        if (auto sent = wait_in_flight(); !sent) return sent;
        in_flight = std::async(std::launch::async, [&, body = std::move(body), rows = chunk.rows, first]() {
          return send_chunk(body, rows, early_seq, first, false);
        });
        first = false;
        return OkStatus();
      });
  Status sent = wait_in_flight();  // even after a failed scan: the send uses this frame
  Status finished = !snapshot_seq ? Status(std::unexpected(snapshot_seq.error()))
                    : !sent       ? sent
                                  : send_chunk(EncodeSnapshotChunk("[]"), 0, *snapshot_seq, first, true);
  (void)store_.SetSetting(progress_key, "");
  if (!finished) return std::unexpected(finished.error());
  spdlog::info("backup: initial sync of {} to {} done: {} rows at sequence {}", module, pairing.partner->fqdn,
               rows_sent, *snapshot_seq);
  return *snapshot_seq;
}

Status BackupShipper::ResendRowsHomedIn(const std::string& home_pool) {
  auto cms = replica_.Current();
  auto pairing = PairingOf(cms.topology, options_.pool, *cms.document);
  if (!pairing) return std::unexpected(pairing.error());
  auto secret = LoadOrCreatePairingSecret(options_.data_dir, pairing->local->fqdn, pairing->partner->fqdn);
  if (!secret) return std::unexpected(secret.error());
  for (std::string_view module : {kUserModule, kConferenceModule}) {
    if (auto sent = SendSnapshot(*pairing, *secret, std::string(module), home_pool); !sent) {
      return std::unexpected(sent.error());
    }
  }
  return OkStatus();
}

Status BackupShipper::SendBatches(const Pairing& pairing, const std::string& secret, const std::string& module,
                                  int64_t& cursor) {
  const std::string& partner = pairing.partner->fqdn;
  std::string labels = fmt::format("direction=\"export\",partner=\"{}\",module=\"{}\"", partner, module);
  Counter* batches = metrics_.GetCounter("tandem_backup_batches_total", "Backup batches shipped or applied", labels);
  Counter* bytes = metrics_.GetCounter("tandem_backup_bytes_total", "Compressed backup bytes shipped or applied", labels);
  auto skip_setting = store_.GetSetting(SkipThroughSettingKey(module));
  if (!skip_setting) return std::unexpected(skip_setting.error());
  const int64_t skip_through = skip_setting->has_value() ? std::atoll((*skip_setting)->c_str()) : 0;
  auto log = LocalChangeLogId(store_);
  if (!log) return std::unexpected(log.error());
  // Ship until caught up, but give the other modules a turn now and then.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  while (std::chrono::steady_clock::now() < deadline) {
    // Records set aside as divergent (failback after a disaster failover) never ship.
    auto changes = store_.ReadModuleChanges(module, std::max(cursor, skip_through), options_.batch_records);
    if (!changes) return std::unexpected(changes.error());
    if (pairing.served_elsewhere) {
      // What this pool accepted after the partner took its users over is divergent:
      // kept here (backup status shows it), never shipped over the partner's changes.
      int64_t cutoff = DivergenceCutoff(*pairing.served_elsewhere, module);
      std::erase_if(*changes, [&](const ChangeRecord& change) { return change.seq > cutoff; });
    }
    if (changes->empty()) return OkStatus();
    size_t payload_bytes = 0;
    size_t count = 0;
    while (count < changes->size() && (count == 0 || payload_bytes < options_.batch_bytes)) {
      payload_bytes += (*changes)[count++].payload.size();
    }
    changes->resize(count);
    EncodedBody body = EncodeChanges(*changes);
    auto applied = CallPartner(pairing, secret, "POST", "/backup/apply",
                               {{"module", module},
                                {"after", std::to_string(cursor)},
                                {"log", *log},
                                {"sha256", body.sha256}},
                               body.compressed, options_.peer_timeout);
    if (!applied) return std::unexpected(applied.error());
    int64_t applied_seq = applied->value("applied_seq", int64_t{0});
    if (applied_seq < changes->back().seq) {
      return MakeError(ErrorCode::kInternal, fmt::format("pool {} applied {} only up to sequence {} of {}", partner,
                                                         module, applied_seq, changes->back().seq));
    }
    if (auto recorded = store_.RecordExportAck(partner, module, applied_seq, ToUnixMillis(clock_.Now())); !recorded) {
      return recorded;
    }
    cursor = applied_seq;
    batches->Increment();
    bytes->Increment(body.compressed.size());
  }
  return OkStatus();
}

}  // namespace tandem
