// SQLite implementation of Store: the embedded default back-end. WAL mode, a busy
// timeout so several processes on one host (all servers of a local pool) can share
// one file, and write transactions taken with BEGIN IMMEDIATE so they never deadlock.
//
// Thread-safety: one connection per SqliteStore, guarded by a mutex.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "store/store.h"

struct sqlite3;

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
  Status AddUsers(const std::vector<UserRecord>& users) override;
  Status RemoveUser(const std::string& uri) override;
  Result<std::optional<UserRecord>> FindUser(const std::string& username, const std::string& domain) override;
  Result<std::vector<UserRecord>> ListUsers() override;
  Result<std::vector<ChangeRecord>> ReadChanges(int64_t after_seq, int limit) override;

 private:
  Status Exec(const char* sql);  // requires mu_ held
  Error SqliteError(std::string_view what) const;
  Result<int> SchemaVersionLocked();
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back if it fails.
  Status InWriteTransaction(const std::function<Status()>& body);
  Status AppendChangeLocked(const ChangeRecord& change);  // inside a transaction

  std::mutex mu_;
  sqlite3* db_;
  std::string path_;
};

}  // namespace tandem
