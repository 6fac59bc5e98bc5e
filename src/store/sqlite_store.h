// SQLite implementation of Store: the embedded default back-end. WAL mode, a busy
// timeout so several processes on one host (all servers of a local pool) can share
// one file, and write transactions taken with BEGIN IMMEDIATE so they never deadlock.
//
// Thread-safety: one connection per SqliteStore, guarded by a mutex.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "store/replication.h"
#include "store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tandem {

class SqliteStore final : public Store {
 public:
  // Use OpenSqliteStore(); the constructor only takes ownership of an open handle.
  SqliteStore(sqlite3* db, std::string path);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Status Migrate() override;
  Result<int> SchemaVersion() override;
  Result<std::optional<CmsVersionRecord>> LatestCmsVersion() override;
  Status AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) override;
  Status RemoveCmsVersions(const std::vector<CmsVersionRecord>& versions) override;
  Status AddUsers(const std::vector<UserRecord>& users) override;
  Status RemoveUser(const std::string& uri) override;
  Result<std::optional<UserRecord>> FindUser(const std::string& username, const std::string& domain) override;
  Result<std::vector<UserRecord>> ListUsers() override;
  Status UpsertContact(const ContactRecord& contact) override;
  Status RemoveContact(const std::string& owner, const std::string& contact) override;
  Result<std::vector<ContactRecord>> ListContacts(const std::string& owner) override;
  Status AddContactGroup(const std::string& owner, const std::string& name) override;
  Status RemoveContactGroup(const std::string& owner, const std::string& name) override;
  Result<std::vector<ContactGroupRecord>> ListContactGroups(const std::string& owner) override;
  Status SetPresenceNote(const std::string& owner, const std::string& note) override;
  Result<PresenceNoteRecord> GetPresenceNote(const std::string& owner) override;
  Result<PrivacySettings> UpdatePrivacy(const std::string& owner, const PrivacyUpdate& update) override;
  Result<PrivacySettings> GetPrivacy(const std::string& owner) override;
  Result<PresencePolicy> GetPresencePolicy(const std::string& owner) override;
  Result<MeetingRecord> CreateMeeting(const MeetingRecord& meeting) override;
  Result<MeetingRecord> UpdateMeeting(const std::string& id, const MeetingUpdate& update) override;
  Result<MeetingRecord> CancelMeeting(const std::string& id) override;
  Result<std::optional<MeetingRecord>> GetMeeting(const std::string& id) override;
  Result<std::vector<MeetingRecord>> ListMeetings(const MeetingFilter& filter) override;
  Result<ContentInfo> PutContent(const ContentInfo& info, std::string_view bytes) override;
  Result<std::optional<ContentRecord>> GetContent(const std::string& meeting_id, const std::string& name) override;
  Result<std::vector<ContentInfo>> ListContent(const std::string& meeting_id) override;
  Result<std::vector<ChangeRecord>> ReadChanges(int64_t after_seq, int limit) override;
  Status RenewLease(const LeaseRecord& lease) override;
  Status ReleaseLease(const std::string& server_id) override;
  Result<std::vector<LeaseRecord>> ListLeases(const std::string& pool) override;
  // Replication.
  Result<std::vector<ChangeRecord>> ReadModuleChanges(std::string_view module, int64_t after_seq, int limit) override;
  Result<ChangeLogHead> ModuleHead(std::string_view module) override;
  Result<ImportProgress> ApplyChanges(std::string_view source_pool, std::string_view module,
                                      const std::vector<ChangeRecord>& batch) override;
  // Reads through a connection of its own, so a long scan blocks no other caller.
  Result<int64_t> ScanRows(std::string_view module, std::string_view home_pool, std::string_view key_from,
                           std::string_view key_to, int chunk_rows,
                           const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) override;
  Result<int64_t> ScanSnapshot(std::string_view module, std::string_view home_pool, int chunk_rows, size_t chunk_bytes,
                               const std::function<Status(SnapshotChunk&&)>& sink) override;
  Result<ImportProgress> ApplySnapshotChunk(std::string_view source_pool, std::string_view module,
                                            std::string_view home_pool, int64_t snapshot_seq, bool first, bool last,
                                            std::string_view chunk_json) override;
  Result<std::vector<ImportProgress>> ListImportProgress() override;
  Status RecordExportAck(std::string_view partner_pool, std::string_view module, int64_t acked_seq,
                         int64_t now_ms) override;
  Result<std::vector<ExportProgress>> ListExportProgress() override;
  Result<NamedLease> TryAcquireNamedLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                          int64_t expires_at_ms) override;
  Status ReleaseNamedLease(std::string_view name, std::string_view holder) override;
  Status SetSetting(std::string_view key, std::string_view value) override;
  Result<std::optional<std::string>> GetSetting(std::string_view key) override;
  // Soft state.
  Status WriteSoftState(const std::vector<SoftStateWrite>& batch) override;
  Result<std::vector<SoftStateRow>> LoadSoftState(std::string_view pool, const std::vector<int>& groups,
                                                  int64_t now_ms) override;
  Result<int64_t> DeleteExpiredSoftState(std::string_view pool, int64_t now_ms) override;

 private:
  Status Exec(const char* sql);  // requires mu_ held
  Error SqliteError(std::string_view what) const;
  Result<int> SchemaVersionLocked();
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back if it fails.
  Status InWriteTransaction(const std::function<Status()>& body);
  Status AppendChangeLocked(const ChangeRecord& change);  // inside a transaction
  // Runs `body` inside BEGIN ... COMMIT (one consistent snapshot for several reads).
  Status InReadTransaction(const std::function<Status()>& body);
  // The home pool of a provisioned user; kNotFound otherwise. Requires mu_ held.
  Result<std::string> UserHomePoolLocked(const std::string& uri);
  // Requires mu_ held (inside a transaction for consistency with other reads).
  Result<std::vector<ContactRecord>> ListContactsLocked(const std::string& owner);
  Result<PrivacySettings> GetPrivacyLocked(const std::string& owner);
  Result<std::optional<MeetingRecord>> GetMeetingLocked(const std::string& id);
  // Writes the meeting row (insert or replace) and its change-log record.
  Status WriteMeetingLocked(const MeetingRecord& meeting, bool insert);
  // Change-log records after `after_seq`, of one module or (nullopt) all. Requires mu_ held.
  Result<std::vector<ChangeRecord>> ReadChangesLocked(std::optional<std::string_view> module, int64_t after_seq,
                                                      int limit);
  // The newest change-log record of `module` on `db` (this store's, or a scan's own).
  Result<ChangeLogHead> ModuleHeadOn(sqlite3* db, std::string_view module) const;
  Error SqliteErrorOn(sqlite3* db, std::string_view what) const;
  // Runs replication's writes in InWriteTransaction.
  InReplicationTx ReplicationWriter();
  // Runs `scan` (ScanTables or ScanSnapshotTables over the cursors it is given) in
  // one read transaction of a connection of its own; the module's head seq as of it.
  Result<int64_t> ScanOnOwnConnection(std::string_view module, const std::function<Status(const OpenCursor&)>& scan);
  friend class SqliteReplicationTx;

  std::mutex mu_;
  sqlite3* db_;
  sqlite3_stmt* find_user_stmt_ = nullptr;  // guarded by mu_; FindUser is on the REGISTER path
  std::string path_;
};

}  // namespace tandem
